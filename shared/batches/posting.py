"""The POST side of a batch (its second thread, see batches.upgrader): the outdated targets its GETs
found are claimed, then upgraded each once its spacing has passed, in the order of their GETs.

A claim (an ETag-checked write of the target rows, so that no other batch upgrades them) is
written by a thread of its own, beside the POSTs: the POSTs of targets claimed before never wait
for it. The POST thread tells the pacer how many POSTs it has lined up, so that no slot is
reserved for a POST that will not come."""

from __future__ import annotations

import threading
import time
from collections import deque

from shared.batches.state import BatchState, call_graph
from shared.domain.targets import Outcome
from shared.foundation.runtime import Average
from shared.graph.client import GraphClient
from shared.stores.targets import TargetRow, TargetStore


class Poster:
    """Claims and POSTs the outdated targets of one batch at a time (a thread per batch)."""

    def __init__(self, *, graph: GraphClient, targets: TargetStore, claim_time: Average) -> None:
        self._graph = graph
        self._targets = targets
        self._claim_time = claim_time  # how long a claim takes here: claims start that much before they are due

    def run(self, batch: BatchState) -> None:
        """The POST thread: each outdated target once its spacing has passed, until every GET is done
        and nothing is due. An error here fails the invocation like one in the GET thread."""
        try:
            self._post_due(batch)
        except BaseException as exc:
            batch.fail(exc)
        finally:
            if batch.claimer is not None:
                batch.claimer.join()

    def _post_due(self, batch: BatchState) -> None:
        """POSTs each claimed target once its spacing has passed. The outdated targets found so far
        are claimed a little before the first is due (claims take time: by then most of the batch's
        GETs are done, so one claim covers most of it), beside the POSTs: a claim never holds up
        the POSTs of targets claimed before."""
        app = batch.run.target
        while True:
            claim, ready = self._next(batch)
            if claim is None and ready is None:
                return
            if claim:
                batch.claimer = threading.Thread(
                    target=self._claim_beside, args=(batch, claim), name=f"{threading.current_thread().name}-claim"
                )
                batch.claimer.start()
                continue
            for sent, (row, installation, not_before) in enumerate(ready, start=1):
                if batch.missing or batch.halted():
                    return  # nothing more is sent; the GET thread stops too
                target = row.target
                more = len(ready) - sent + batch.claimed_due()  # what this thread POSTs next
                posted = call_graph(
                    batch,
                    target,
                    lambda r=target.id, i=installation.id, t=not_before, more=more: batch.scope.post_upgrade(
                        self._graph, r, i, app, t, proceed=lambda: not batch.halted(), more=more
                    ),
                )
                if posted is not None:
                    batch.add(Outcome(target, "upgraded", version=app.version))

    def _next(self, batch: BatchState) -> tuple[list[TargetRow] | None, list | None]:
        """Waits for the POST thread's next job: rows to claim, or claimed targets due to POST;
        (None, None) when the batch is through."""
        with batch.changed:
            while True:
                if batch.error is not None:
                    return None, None  # the claim thread failed: nothing more is sent
                now = self._graph.now()  # the clock of the GETs' responses, which the POSTs' due times count from
                unclaimed = [item for item in batch.due if item[0].target not in batch.claimed]
                if unclaimed and not batch.claiming and (batch.checked or now >= unclaimed[0][2] - self._claim_time.value):
                    batch.claiming = True
                    return [row for row, _, _ in unclaimed], None
                ready = []
                while batch.due and batch.due[0][0].target in batch.claimed and (batch.checked or batch.due[0][2] <= now):
                    ready.append(batch.due.popleft())
                if ready:
                    return None, ready
                if batch.checked and not batch.due and not batch.claiming:
                    return None, None
                wakes = [unclaimed[0][2] - self._claim_time.value] if unclaimed and not batch.claiming else []
                if batch.due and batch.due[0][0].target in batch.claimed:
                    wakes.append(batch.due[0][2])
                batch.changed.wait(timeout=max(0.0, min(wakes) - now) if wakes else None)

    def _claim_beside(self, batch: BatchState, rows: list[TargetRow]) -> None:
        """The claim thread: claims `rows` while the POST thread goes on with targets claimed before."""
        try:
            if batch.settle is not None:
                batch.settle()  # the rows being laid out exist now, with their ETags
                rows = [r for r in rows if r.target in batch.settle.rows]
                with batch.changed:
                    batch.due = deque(item for item in batch.due if item[0].target in batch.settle.rows)
            began = time.monotonic()
            self._claim(batch, rows)
            self._claim_time.add(time.monotonic() - began)
        except BaseException as exc:
            batch.fail(exc)
        finally:
            with batch.changed:
                batch.claiming = False
                batch.changed.notify_all()

    def _claim(self, batch: BatchState, rows: list[TargetRow]) -> None:
        """Claims, in one transaction per partition, every outdated target found so far that is not
        claimed yet: the ones due now and those whose spacing has not passed (they will be POSTed
        too), so a batch claims once or twice rather than once per POST."""
        fresh = [r for r in rows if r.target not in batch.claimed]
        if not fresh:
            return
        got = {r.target for r in self._targets.claim(batch.run.run_id, fresh, batch.claim)}
        lost = {r.target for r in fresh} - got  # decided meanwhile, or being upgraded by another batch
        with batch.changed:
            batch.claimed |= got
            if lost:
                batch.due = deque(item for item in batch.due if item[0].target not in lost)
