"""Per target: look up the installation, decide, upgrade once. A batch of targets of one scope per
queue message.

A batch GETs its targets one after another while a second thread POSTs the outdated ones (see
steps.posting), each as soon as the scope's spacing after its GET has passed (one request per
second on a chat, four on a team): other targets' requests fill the gap, and neither bucket waits
for the other, so the per-resource limit costs no throughput and both buckets see steady demand.

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

from shared.domain.messages import UpgradeTargets
from shared.domain.runs import Control, RunRecord
from shared.domain.targets import Outcome, Target
from shared.domain.versions import is_at_least
from shared.foundation.errors import GraphRetryable
from shared.foundation.telemetry import event, log_outcome
from shared.graph.client import GraphClient
from shared.scopes import scope as scope_named
from shared.steps.batch_state import BatchState, Settle, call_graph, failure_of
from shared.steps.holding import give_back
from shared.steps.posting import Poster
from shared.stores.targets import TargetRow, TargetStore

# Batches GETting at once in this process. All the GETs of all batches in flight share the pacing
# rate; if every batch took its share, every batch would last as long as the slowest, and the host
# would take no new message while they all wait (it fetches more only below newBatchThreshold). A
# few batches at a time finish their GETs quickly, in the order they came, and leave room.
GET_PHASES = threading.BoundedSemaphore(4)


class BatchUpgrader:
    """Processes one UpgradeTargets message."""

    def __init__(
        self,
        *,
        graph: GraphClient,
        targets: TargetStore,
        max_attempts: int,
        requeue: Callable[[UpgradeTargets, int], None],
        control: Callable[[str], Control] | None = None,
        give_back: Callable[[str, list[TargetRow]], None] | None = None,
    ) -> None:
        self._graph = graph
        self._targets = targets
        self._max_attempts = max_attempts
        self._requeue = requeue
        self._control = control or (lambda run_id: Control())
        self._give_back = give_back or targets.release
        self._poster = Poster(graph=graph, targets=targets)

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
        chain = message.claim or message_id
        targets = [Target(message.scope, i) for i in message.ids]
        settle = None
        if written is not None:
            rows = {t: TargetRow(t, "pending", "") for t in targets}
            settle = Settle(rows, written)
        elif dequeue_count == 1 and len(message.etags) == len(targets):  # as queued: no need to read them
            rows = {t: TargetRow(t, "pending", e) for t, e in zip(targets, message.etags, strict=True)}
        else:
            rows = self._targets.get(run.run_id, targets)
        if message.canary:
            for row in rows.values():
                row.canary = True
        work = [rows[t] for t in dict.fromkeys(targets) if t in rows and rows[t].open_to(chain, adopt)]
        control = self._control(run.run_id)
        if control.stopped:  # queued work of a stopped run ends without a Graph call
            if settle is not None:
                settle()
                work = [r for r in work if r.target in rows]
            recorded = self._targets.record(run.run_id, rows, [Outcome(r.target, "cancelled") for r in work], chain, adopt)
            for outcome in recorded:
                log_outcome(run, outcome)
            return recorded
        if control.phase == "canary":  # only canary targets are upgraded until the canary is decided
            work = [r for r in work if r.canary]
        if control.holding:  # the targets stay pending, for the batches queued when the run goes on
            self._give_back(run.run_id, [r for r in work if r.state == "claimed"])
            return []
        recorded: list[Outcome] = []
        attempt = message.attempt
        while work:
            batch = BatchState(run, scope_named(message.scope), f"{chain}:{uuid.uuid4().hex[:8]}", settle=settle)
            batch.halted = lambda: _halting(self._control(run.run_id))
            poster = threading.Thread(target=self._poster.run, args=(batch,), name=f"{threading.current_thread().name}-post")
            poster.start()
            try:
                with GET_PHASES:
                    for i, row in enumerate(work):
                        if batch.missing or batch.halted():
                            break
                        self._check(batch, row, more=len(work) - i - 1)
            finally:
                with batch.changed:
                    batch.checked = True
                    batch.changed.notify_all()
                poster.join()
            if batch.error is not None:
                raise batch.error  # nothing is recorded: the message is delivered again
            if settle is not None:
                settle()
            recorded += self._targets.record(run.run_id, rows, batch.outcomes, chain, adopt)
            if batch.missing or batch.halted():
                recorded += self._halt(run, batch, rows, work, chain, adopt)
                break
            if not batch.retry:
                break
            if attempt + 1 >= self._max_attempts:
                gave_up = [Outcome(t, "failed", failure=failure_of(e)) for t, e in batch.retry.items()]
                recorded += self._targets.record(run.run_id, rows, gave_up, chain, adopt)
                break
            delay = math.ceil(max(e.retry_after for e in batch.retry.values()))
            _log_rescheduled(run, batch.retry, delay, attempt + 2)
            if requeue:
                again = UpgradeTargets(
                    run_id=run.run_id,
                    scope=message.scope,
                    ids=tuple(t.id for t in batch.retry),
                    attempt=attempt + 1,
                    claim=chain,
                    canary=message.canary,
                )
                self._requeue(again, delay)
                break
            time.sleep(delay)
            attempt += 1
            work = [rows[t] for t in batch.retry if t in rows]  # their rows as this batch left them (claimed, some)
        for outcome in recorded:
            log_outcome(run, outcome)
        if batch.missing:
            raise batch.missing
        return recorded

    def _halt(self, run: RunRecord, batch: BatchState, rows: dict, work: list[TargetRow], chain: str, adopt: str | None):
        """The run stopped (or Graph said a permission is missing) or paused while the batch ran:
        its undecided targets end cancelled (stopped) or are given back (paused, missing
        permission: the sweep that follows the failed run ends them)."""
        decided = {o.target for o in batch.outcomes}
        undecided = [r for r in work if r.target in rows and r.target not in decided]
        if self._control(run.run_id).stopped and not batch.missing:
            return self._targets.record(run.run_id, rows, [Outcome(r.target, "cancelled") for r in undecided], chain, adopt)
        self._give_back(run.run_id, [r for r in undecided if r.target in batch.claimed])
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


def _halting(control: Control) -> bool:
    return control.stopped or control.holding


def batch_upgrader(services) -> BatchUpgrader:
    return BatchUpgrader(
        graph=services.graph,
        targets=services.targets,
        max_attempts=services.settings.max_attempts,
        requeue=services.dispatcher.requeue,
        control=services.control,
        give_back=lambda run_id, rows: give_back(services, run_id, rows),
    )
