"""Where a batch of targets is decided: per target, look up the installation, decide, upgrade once.

A batch GETs its targets one after another while a second thread POSTs the outdated ones (see
batches.posting), each as soon as the scope's spacing after its GET has passed (one request per
second on a chat, four on a team): other targets' requests fill the gap, and neither bucket waits
for the other, so the per-resource limit costs no throughput and both buckets see steady demand.

The gate (steering.gate) is asked before the batch starts and before every request: a stopped run
ends the batch's targets `cancelled`, a held one gives them back, and in a step of the run's plan
only the targets admitted to it are decided.

Never twice: a target is claimed (ETag-checked) before its POST, and a target found claimed by a
crashed attempt is re-checked with a GET; if it is already at the target version, that attempt's
POST went through and the target counts as upgraded.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from shared.batches.posting import Poster
from shared.batches.state import BatchState, Settle, call_graph, failure_of
from shared.domain.messages import UpgradeTargets
from shared.domain.runs import RunRecord
from shared.domain.steering import STOP, Gate
from shared.domain.targets import Outcome, Target
from shared.domain.versions import is_at_least
from shared.foundation.errors import GraphRetryable
from shared.foundation.runtime import Average
from shared.foundation.telemetry import event, log_outcome
from shared.graph.client import GraphClient
from shared.scopes import scope as scope_named
from shared.stores.targets import TargetRow, TargetStore


@dataclass
class Work:
    """One message's batch: its rows, the open ones to decide, the chain that claims them."""

    run: RunRecord
    message: UpgradeTargets
    rows: dict[Target, TargetRow]
    open: list[TargetRow]
    chain: str
    adopt: str | None
    settle: Settle | None


class BatchUpgrader:
    """Processes one UpgradeTargets message."""

    def __init__(
        self,
        *,
        graph: GraphClient,
        targets: TargetStore,
        max_attempts: int,
        requeue: Callable[[UpgradeTargets, int], None],
        gate: Callable[[RunRecord], Gate],
        give_back: Callable[[RunRecord, list[TargetRow]], None],
        claim_time: Average,
        get_phases: threading.BoundedSemaphore,
    ) -> None:
        self._graph = graph
        self._targets = targets
        self._max_attempts = max_attempts
        self._requeue = requeue
        self._gate = gate
        self._give_back = give_back
        self._get_phases = get_phases
        self._poster = Poster(graph=graph, targets=targets, claim_time=claim_time)

    def process(
        self,
        run: RunRecord,
        message: UpgradeTargets,
        message_id: str,
        dequeue_count: int = 1,
        *,
        adopt: str | None = None,
        requeue: bool = True,
        written: Callable[[], dict[Target, str]] | None = None,
    ) -> list[Outcome]:
        """Decides the message's targets; returns the outcomes recorded.

        Targets that hit a retryable error are queued again after Retry-After (`requeue`), or, for
        a batch that no queue message stands for (one processed inline), retried here after the
        wait. `adopt` lets the batch take over targets claimed by dead attempts (see open_to).
        `written`, for targets whose rows are being created as the batch starts, waits for their
        rows and gives their ETags: the GETs go first, the rows are needed only to claim and record."""
        if run.target is None:
            raise RuntimeError(f"run {run.run_id} has targets queued but no target version yet")
        work = self._work(run, message, message_id, dequeue_count, adopt, written)
        now = self._gate(run)
        if now.verdict == STOP:  # queued work of a stopped run ends without a Graph call
            return self._end_cancelled(work, work.open)
        if not now.go:  # the targets stay pending, for the batches queued when the run goes on
            self._give_back(run, [r for r in work.open if r.state == "claimed"])
            return []
        if now.admitted_only:  # in a step of the run's plan: only the targets admitted to it
            work.open = [r for r in work.open if r.admitted]
        return self._decide(work, requeue)

    def _work(
        self,
        run: RunRecord,
        message: UpgradeTargets,
        message_id: str,
        dequeue_count: int,
        adopt: str | None,
        written: Callable[[], dict[Target, str]] | None,
    ) -> Work:
        """The message's rows: as being written, as queued (their ETags in the message), or read."""
        targets = [Target(message.scope, i) for i in message.ids]
        settle = None
        if written is not None:
            rows = {t: TargetRow(t, "pending", "") for t in targets}
            settle = Settle(rows, written)
        elif dequeue_count == 1 and len(message.etags) == len(targets):  # as queued: no need to read them
            rows = {t: TargetRow(t, "pending", e) for t, e in zip(targets, message.etags, strict=True)}
        else:
            rows = self._targets.get(run.run_id, targets)
        if message.admitted:
            for row in rows.values():
                row.admitted = True
        chain = message.claim or message_id
        open_rows = [rows[t] for t in dict.fromkeys(targets) if t in rows and rows[t].open_to(chain, adopt)]
        return Work(run, message, rows, open_rows, chain, adopt, settle)

    def _end_cancelled(self, work: Work, rows: list[TargetRow]) -> list[Outcome]:
        if work.settle is not None:
            work.settle()
            rows = [r for r in rows if r.target in work.rows]
        outcomes = [Outcome(r.target, "cancelled") for r in rows]
        recorded = self._targets.record(work.run.run_id, work.rows, outcomes, work.chain, work.adopt)
        for outcome in recorded:
            log_outcome(work.run, outcome)
        return recorded

    def _decide(self, work: Work, requeue: bool) -> list[Outcome]:
        """Attempts until every target is decided, the gate closes, or what is left waits for a retry."""
        run, todo = work.run, work.open
        recorded: list[Outcome] = []
        attempt = work.message.attempt
        batch = None
        while todo:
            batch = self._attempt(run, todo, work)
            if work.settle is not None:
                work.settle()
            recorded += self._targets.record(run.run_id, work.rows, batch.outcomes, work.chain, work.adopt)
            if batch.missing or batch.halted():
                recorded += self._halt(work, batch, todo)
                break
            if not batch.retry:
                break
            if attempt + 1 >= self._max_attempts:
                gave_up = [Outcome(t, "failed", failure=failure_of(e)) for t, e in batch.retry.items()]
                recorded += self._targets.record(run.run_id, work.rows, gave_up, work.chain, work.adopt)
                break
            delay = math.ceil(max(e.retry_after for e in batch.retry.values()))
            _log_rescheduled(run, batch.retry, delay, attempt + 2)
            if requeue:
                self._requeue(self._again(work, batch, attempt + 1), delay)
                break
            time.sleep(delay)
            attempt += 1
            todo = [work.rows[t] for t in batch.retry if t in work.rows]  # their rows as this batch left them (claimed, some)
        for outcome in recorded:
            log_outcome(run, outcome)
        if batch is not None and batch.missing:
            raise batch.missing
        return recorded

    def _attempt(self, run: RunRecord, todo: list[TargetRow], work: Work) -> BatchState:
        """One pass over the targets: the GETs here, the claims and POSTs on a thread beside."""
        batch = BatchState(run, scope_named(work.message.scope), f"{work.chain}:{uuid.uuid4().hex[:8]}", settle=work.settle)
        batch.halted = lambda: not self._gate(run).go
        poster = threading.Thread(target=self._poster.run, args=(batch,), name=f"{threading.current_thread().name}-post")
        poster.start()
        try:
            with self._get_phases:
                for i, row in enumerate(todo):
                    if batch.missing or batch.halted():
                        break
                    self._check(batch, row, more=len(todo) - i - 1)
        finally:
            with batch.changed:
                batch.checked = True
                batch.changed.notify_all()
            poster.join()
        if batch.error is not None:
            raise batch.error  # nothing is recorded: the message is delivered again
        return batch

    @staticmethod
    def _again(work: Work, batch: BatchState, attempt: int) -> UpgradeTargets:
        message = work.message
        ids = tuple(t.id for t in batch.retry)
        return UpgradeTargets(
            run_id=message.run_id, scope=message.scope, ids=ids, attempt=attempt, claim=work.chain, admitted=message.admitted
        )

    def _halt(self, work: Work, batch: BatchState, todo: list[TargetRow]) -> list[Outcome]:
        """The gate closed (or Graph said a permission is missing) while the batch ran: its
        undecided targets end cancelled (stopped) or are given back (held; a missing permission:
        the sweep that follows the failed run ends them)."""
        decided = {o.target for o in batch.outcomes}
        undecided = [r for r in todo if r.target in work.rows and r.target not in decided]
        if self._gate(work.run).verdict == STOP and not batch.missing:
            return self._end_cancelled(work, undecided)
        self._give_back(work.run, [r for r in undecided if r.target in batch.claimed])
        return []

    def _check(self, batch: BatchState, row: TargetRow, *, more: int) -> None:
        """The target's GET (`more` of them follow in this batch), and what it decides."""
        run, target = batch.run, row.target
        app = run.target
        found = call_graph(
            batch,
            target,
            lambda: batch.scope.get_installation(
                self._graph, target.id, app.teams_app_id, proceed=lambda: not batch.halted(), more=more
            ),
        )
        if found is None:
            return
        installation, received_at = found
        if installation is None:
            batch.add(Outcome(target, "notInstalled"))
            return
        if installation.version and is_at_least(installation.version, app.version):
            # a claimed target now current was upgraded by an attempt that died before recording it
            outcome = "upgraded" if row.state == "claimed" else "alreadyCurrent"
            batch.add(Outcome(target, outcome, version=installation.version))
        elif run.dry_run:
            batch.add(Outcome(target, "wouldUpgrade", version=installation.version))
        else:
            with batch.changed:
                batch.due.append((row, installation, received_at + batch.scope.spacing))
                batch.changed.notify_all()


def _log_rescheduled(run: RunRecord, retry: dict[Target, GraphRetryable], delay: int, attempt: int) -> None:
    for target, error in retry.items():
        event(
            "rescheduled",
            "%s %s of run %s waits %d s: %s %s (attempt %d)",
            target.label,
            target.id,
            run.run_id,
            delay,
            error.status,
            error.code,
            attempt,
            runId=run.run_id,
            appId=run.target.teams_app_id,
            scope=target.scope,
            targetId=target.id,
            outcome="rescheduled",
            graphStatus=error.status,
            graphCode=error.code,
            retryAfter=delay,
        )
