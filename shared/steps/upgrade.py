"""Per target: look up the installation, decide, upgrade once. A batch of targets of one scope per
queue message.

A batch GETs its targets one after another while a second thread POSTs the outdated ones, each as
soon as the scope's spacing after its GET has passed (one request per second on a chat, four on a
team): other targets' requests fill the gap, and neither bucket waits for the other, so the per-
resource limit costs no throughput and both buckets see steady demand.

Never twice: a target is claimed (ETag-checked) before its POST, and a target found claimed by a
crashed attempt is re-checked with a GET; if it is already at the target version, that attempt's
POST went through and the target counts as upgraded.
"""

from __future__ import annotations

import math
import threading
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

# Batches GETting at once in this process. All the GETs of all batches in flight share the pacing
# rate; if every batch took its share, every batch would last as long as the slowest, and the host
# would take no new message while they all wait (it fetches more only below newBatchThreshold). A
# few batches at a time finish their GETs quickly, in the order they came, and leave room.
GET_PHASES = threading.BoundedSemaphore(4)


class _Average:
    """A moving average, shared by this process's batches."""

    def __init__(self, value: float, *, cap: float) -> None:
        self.value = value
        self._cap = cap
        self._lock = threading.Lock()

    def add(self, sample: float) -> None:
        with self._lock:
            self.value = 0.8 * self.value + 0.2 * min(sample, self._cap)


CLAIM_TIME = _Average(0.2, cap=0.8)  # how long a claim takes here: claims start that much before they are due


def failure_of(error: GraphError) -> dict:
    return {"status": error.status, "code": error.code, "message": error.message}


def graph_outcome(target: Target, error: GraphError) -> Outcome:
    """A final Graph error on a target's GET or POST: 404 means the resource or the app is gone."""
    if error.status == 404:
        return Outcome(target, "notInstalled")
    return Outcome(target, "failed", failure=failure_of(error))


class _Settle:
    """Once: waits for rows being written and puts their ETags in the batch's rows; targets whose
    row this step did not create (another copy's, an earlier attempt's) leave the batch."""

    def __init__(self, rows: dict[Target, TargetRow], written: Callable[[], dict[Target, str]]) -> None:
        self.rows = rows
        self._written = written
        self._lock = threading.Lock()
        self._done = False

    def __call__(self) -> None:
        with self._lock:
            if self._done:
                return
            etags = self._written()
            for target in list(self.rows):
                if target in etags:
                    self.rows[target].etag = etags[target]
                else:
                    del self.rows[target]
            self._done = True


@dataclass
class _Batch:
    """The state of one batch while it runs, shared by its GET and POST threads."""

    run: RunRecord
    scope: Scope
    claim: str
    outcomes: list[Outcome] = field(default_factory=list)
    retry: dict[Target, GraphRetryable] = field(default_factory=dict)
    due: deque[tuple[TargetRow, Installation, float]] = field(default_factory=deque)  # outdated, in the order of their GETs
    claimed: set[Target] = field(default_factory=set)
    checked: bool = False  # every GET is done
    changed: threading.Condition = field(default_factory=threading.Condition)
    error: BaseException | None = None  # what stopped the POST thread
    settle: _Settle | None = None

    def add(self, outcome: Outcome) -> None:
        with self.changed:
            self.outcomes.append(outcome)


class BatchUpgrader:
    """Processes one UpgradeTargets message."""

    def __init__(
        self, *, graph: GraphClient, targets: TargetStore, max_attempts: int, requeue: Callable[[UpgradeTargets, int], None]
    ) -> None:
        self._graph = graph
        self._targets = targets
        self._max_attempts = max_attempts
        self._requeue = requeue

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
            settle = _Settle(rows, written)
        elif dequeue_count == 1 and len(message.etags) == len(targets):  # as queued: no need to read them
            rows = {t: TargetRow(t, "pending", e) for t, e in zip(targets, message.etags, strict=True)}
        else:
            rows = self._targets.get(run.run_id, targets)
        work = [rows[t] for t in dict.fromkeys(targets) if t in rows and rows[t].open_to(chain, adopt)]
        recorded: list[Outcome] = []
        attempt = message.attempt
        while work:
            batch = _Batch(run, scope_named(message.scope), f"{chain}:{uuid.uuid4().hex[:8]}", settle=settle)
            poster = threading.Thread(target=self._post_all, args=(batch,), name=f"{threading.current_thread().name}-post")
            poster.start()
            try:
                with GET_PHASES:
                    for row in work:
                        self._check(batch, row)
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
                    run_id=run.run_id, scope=message.scope, ids=tuple(t.id for t in batch.retry), attempt=attempt + 1, claim=chain
                )
                self._requeue(again, delay)
                break
            time.sleep(delay)
            attempt += 1
            work = [rows[t] for t in batch.retry if t in rows]  # their rows as this batch left them (claimed, some)
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

    def _post_all(self, batch: _Batch) -> None:
        """The POST thread: each outdated target once its spacing has passed, until every GET is done
        and nothing is due. An error here fails the invocation like one in the GET thread."""
        try:
            self._post_due(batch)
        except BaseException as exc:
            batch.error = exc
            with batch.changed:
                batch.due.clear()  # the GET thread goes on; nothing more is POSTed

    def _post_due(self, batch: _Batch) -> None:
        """Claims the outdated targets found so far a little before the first is due (claims take
        time: by then most of the batch's GETs are done, so one claim covers most of it), then
        POSTs each claimed target once its spacing has passed."""
        app = batch.run.target
        while True:
            claim, ready = self._next(batch)
            if claim is None and ready is None:
                return
            if claim:
                if batch.settle is not None:
                    batch.settle()
                    claim = [r for r in claim if r.target in batch.settle.rows]
                    with batch.changed:
                        batch.due = deque(item for item in batch.due if item[0].target in batch.settle.rows)
                began = time.time()
                self._claim(batch, claim)
                CLAIM_TIME.add(time.time() - began)
                continue
            for row, installation, not_before in ready:
                target = row.target
                posted = self._call(
                    batch,
                    target,
                    lambda r=target.id, i=installation.id, t=not_before: batch.scope.post_upgrade(self._graph, r, i, app, t),
                )
                if posted is not None:
                    batch.add(Outcome(target, "upgraded", version=app.version))

    @staticmethod
    def _next(batch: _Batch) -> tuple[list[TargetRow] | None, list | None]:
        """Waits for the POST thread's next job: rows to claim, or claimed targets due to POST;
        (None, None) when the batch is through."""
        with batch.changed:
            while True:
                now = time.time()
                unclaimed = [item for item in batch.due if item[0].target not in batch.claimed]
                if unclaimed and (batch.checked or now >= unclaimed[0][2] - CLAIM_TIME.value):
                    return [row for row, _, _ in unclaimed], None
                ready = []
                while batch.due and batch.due[0][0].target in batch.claimed and (batch.checked or batch.due[0][2] <= now):
                    ready.append(batch.due.popleft())
                if ready:
                    return None, ready
                if batch.checked and not batch.due:
                    return None, None
                wakes = [unclaimed[0][2] - CLAIM_TIME.value] if unclaimed else []
                if batch.due and batch.due[0][0].target in batch.claimed:
                    wakes.append(batch.due[0][2])
                batch.changed.wait(timeout=max(0.0, min(wakes) - now) if wakes else None)

    def _claim(self, batch: _Batch, rows: list[TargetRow]) -> None:
        """Claims, in one transaction per partition, every outdated target found so far that is not
        claimed yet: the ones due now and those whose spacing has not passed (they will be POSTed
        too), so a batch claims once or twice rather than once per POST."""
        fresh = [r for r in rows if r.target not in batch.claimed]
        if not fresh:
            return
        got = {r.target for r in self._targets.claim(batch.run.run_id, fresh, batch.claim)}
        batch.claimed |= got
        lost = {r.target for r in fresh} - got  # decided meanwhile, or being upgraded by another batch
        if lost:
            with batch.changed:
                batch.due = deque(item for item in batch.due if item[0].target not in lost)

    @staticmethod
    def _call(batch: _Batch, target: Target, call):
        """Runs one Graph call for a target; a retryable error goes to `retry`, a final one to `outcomes`.

        Returns the call's result (True for a call that returns nothing), or None when it failed.
        """
        try:
            result = call()
        except GraphRetryable as exc:
            with batch.changed:
                batch.retry[target] = exc
        except GraphError as exc:
            batch.add(graph_outcome(target, exc))
        else:
            return True if result is None else result
        return None


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
