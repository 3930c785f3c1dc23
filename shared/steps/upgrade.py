"""Per target: look up the installation, decide, upgrade once. A batch of targets of one scope per
queue message.

A batch interleaves its requests so that the per-resource limit (one request per second on a chat,
four on a team) costs no throughput: after each GET it POSTs the outdated targets whose GET is at
least the scope's spacing old (other targets' requests fill the gap), and the rest at the end.

Never twice: a target is claimed (ETag-checked) before its POST, and a target found claimed by a
crashed attempt is re-checked with a GET; if it is already at the target version, that attempt's
POST went through and the target counts as upgraded.
"""

from __future__ import annotations

import math
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from shared.domain.messages import UpgradeTargets
from shared.domain.runs import RunRecord
from shared.domain.targets import Outcome, Target
from shared.domain.versions import is_at_least
from shared.foundation.errors import GraphError, GraphRetryable, MalformedMessage
from shared.foundation.telemetry import event, log_outcome
from shared.graph.client import GraphClient
from shared.scopes import scope as scope_named
from shared.scopes.base import Installation, Scope
from shared.stores.targets import TargetRow, TargetStore


def failure_of(error: GraphError) -> dict:
    return {"status": error.status, "code": error.code, "message": error.message}


def graph_outcome(target: Target, error: GraphError) -> Outcome:
    """A final Graph error on a target's GET or POST: 404 means the resource or the app is gone."""
    if error.status == 404:
        return Outcome(target, "notInstalled")
    return Outcome(target, "failed", failure=failure_of(error))


@dataclass
class _Batch:
    """The state of one batch while it runs."""

    run: RunRecord
    scope: Scope
    claim: str
    outcomes: list[Outcome] = field(default_factory=list)
    retry: dict[Target, GraphRetryable] = field(default_factory=dict)
    due: deque[tuple[TargetRow, Installation, float]] = field(default_factory=deque)  # outdated, in the order of their GETs


class BatchUpgrader:
    """Processes one UpgradeTargets message."""

    def __init__(
        self, *, graph: GraphClient, targets: TargetStore, max_attempts: int, requeue: Callable[[UpgradeTargets, int], None]
    ) -> None:
        self._graph = graph
        self._targets = targets
        self._max_attempts = max_attempts
        self._requeue = requeue

    def process(self, run: RunRecord, message: UpgradeTargets, message_id: str, dequeue_count: int = 1) -> list[Outcome]:
        if run.target is None:
            raise RuntimeError(f"run {run.run_id} has targets queued but no target version yet")
        chain = message.claim or message_id
        targets = [Target(message.scope, i) for i in message.ids]
        if dequeue_count == 1 and len(message.etags) == len(targets):  # as queued: no need to read them
            rows = {t: TargetRow(t, "pending", e) for t, e in zip(targets, message.etags, strict=True)}
        else:
            rows = self._targets.get(run.run_id, targets)
        work = [rows[t] for t in dict.fromkeys(targets) if t in rows and rows[t].open_to(chain)]

        batch = _Batch(run, scope_named(message.scope), f"{chain}:{uuid.uuid4().hex[:8]}")
        for row in work:
            self._check(batch, row)
            self._upgrade(batch, until=time.time())
        self._upgrade(batch, until=None)
        recorded = self._targets.record(run.run_id, rows, batch.outcomes, chain)
        if batch.retry:
            recorded += self._reschedule(run, message, chain, rows, batch.retry)
        for outcome in recorded:
            log_outcome(run, outcome)
        return recorded

    def _check(self, batch: _Batch, row: TargetRow) -> None:
        """The target's GET, and what it decides."""
        run, target = batch.run, row.target
        app = run.target
        found = self._call(batch, target, lambda: batch.scope.get_installation(self._graph, target.id, app.teams_app_id))
        if found is None:
            return
        installation, received_at = found
        if installation is None:
            batch.outcomes.append(Outcome(target, "notInstalled"))
            return
        if installation.version and is_at_least(installation.version, app.version):
            # a claimed target now current was upgraded by an attempt that died before recording it
            outcome = "upgraded" if row.state == "claimed" else "alreadyCurrent"
            batch.outcomes.append(Outcome(target, outcome, version=installation.version))
        elif run.dry_run:
            batch.outcomes.append(Outcome(target, "wouldUpgrade", version=installation.version))
        else:
            batch.due.append((row, installation, received_at + batch.scope.spacing))

    def _upgrade(self, batch: _Batch, *, until: float | None) -> None:
        """POSTs the outdated targets whose spacing after their own GET has passed (all, when until is None).

        Called after every GET, so that a batch's POSTs go out between its GETs: the POST bucket
        then sees steady demand instead of a burst at the end of each batch.
        """
        ready = []
        while batch.due and (until is None or batch.due[0][2] <= until):
            ready.append(batch.due.popleft())
        if not ready:
            return
        claimed = {r.target for r in self._targets.claim(batch.run.run_id, [r for r, _, _ in ready], batch.claim)}
        app = batch.run.target
        for row, installation, not_before in ready:
            if row.target not in claimed:
                continue
            target = row.target
            posted = self._call(
                batch,
                target,
                lambda r=target.id, i=installation.id, t=not_before: batch.scope.post_upgrade(self._graph, r, i, app, t),
            )
            if posted is not None:
                batch.outcomes.append(Outcome(target, "upgraded", version=app.version))

    @staticmethod
    def _call(batch: _Batch, target: Target, call):
        """Runs one Graph call for a target; a retryable error goes to `retry`, a final one to `outcomes`.

        Returns the call's result (True for a call that returns nothing), or None when it failed.
        """
        try:
            result = call()
        except GraphRetryable as exc:
            batch.retry[target] = exc
        except GraphError as exc:
            batch.outcomes.append(graph_outcome(target, exc))
        else:
            return True if result is None else result
        return None

    def _reschedule(
        self, run: RunRecord, message: UpgradeTargets, chain: str, rows, retry: dict[Target, GraphRetryable]
    ) -> list[Outcome]:
        if message.attempt + 1 >= self._max_attempts:
            gave_up = [Outcome(t, "failed", failure=failure_of(e)) for t, e in retry.items()]
            return self._targets.record(run.run_id, rows, gave_up, chain)
        delay = math.ceil(max(e.retry_after for e in retry.values()))
        again = UpgradeTargets(
            run_id=run.run_id, scope=message.scope, ids=tuple(t.id for t in retry), attempt=message.attempt + 1, claim=chain
        )
        self._requeue(again, delay)
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
                message.attempt + 2,
                runId=run.run_id,
                appId=run.target.teams_app_id,
                scope=target.scope,
                targetId=target.id,
                outcome="rescheduled",
                graphStatus=error.status,
                graphCode=error.code,
                retryAfter=delay,
            )
        return []


def upgrade_batch(services, message: UpgradeTargets, message_id: str, dequeue_count: int) -> list[Outcome]:
    """One targets-queue message: the batch, and, in a run that seeds the registry, what it found."""
    run = services.started_run(message.run_id)
    if run is None:
        raise MalformedMessage(f"run {message.run_id} does not exist")
    upgrader = BatchUpgrader(
        graph=services.graph,
        targets=services.targets,
        max_attempts=services.settings.max_attempts,
        requeue=services.dispatcher.requeue,
    )
    recorded = upgrader.process(run, message, message_id, dequeue_count)
    if message.scope in run.seeding and message.scope != "chat":  # chats are seeded as they are listed
        # anything but notInstalled may hold the app (a failed check too): the registry errs on that side
        found = [o.target for o in recorded if o.outcome != "notInstalled"]
        if found:
            services.registry.add(run.target.teams_app_id, found, source="scan")
    return recorded
