"""The state of one batch of targets while it is checked and upgraded, shared by its GET and POST
threads; and what a Graph error means for a target."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from shared.domain.runs import RunRecord
from shared.domain.targets import Outcome, Target
from shared.foundation.errors import GraphError, GraphRetryable, MissingPermissions, RunHalted, missing_permissions
from shared.scopes.base import Installation, Scope
from shared.stores.targets import TargetRow


def failure_of(error: GraphError) -> dict:
    return {"status": error.status, "code": error.code, "message": error.message}


def graph_outcome(target: Target, error: GraphError) -> Outcome:
    """A final Graph error on a target's GET or POST: 404 means the resource or the app is gone."""
    if error.status == 404:
        return Outcome(target, "notInstalled")
    return Outcome(target, "failed", failure=failure_of(error))


class Settle:
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
class BatchState:
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
    error: BaseException | None = None  # what stopped the POST or claim thread
    claiming: bool = False  # a claim is being written beside the POSTs
    claimer: threading.Thread | None = None
    settle: Settle | None = None
    halted: Callable[[], bool] = lambda: False  # the gate no longer lets the run go: send nothing more
    missing: MissingPermissions | None = None  # Graph said the identity lacks a permission

    def add(self, outcome: Outcome) -> None:
        with self.changed:
            self.outcomes.append(outcome)

    def claimed_due(self) -> int:
        """Claimed targets waiting for their POST: what this batch sends to the POST bucket next."""
        with self.changed:
            return sum(1 for row, _, _ in self.due if row.target in self.claimed)

    def fail(self, error: BaseException) -> None:
        """The POST or claim thread failed: nothing more is POSTed; the GET thread goes on, and the
        invocation fails once it is done."""
        with self.changed:
            self.error = self.error or error
            self.due.clear()
            self.changed.notify_all()


def call_graph(batch: BatchState, target: Target, call):
    """Runs one Graph call for a target; a retryable error goes to `retry`, a final one to `outcomes`.

    Returns the call's result (True for a call that returns nothing), or None when it failed.
    """
    try:
        result = call()
    except RunHalted:
        return None  # left undecided: the batch halts
    except GraphRetryable as exc:
        with batch.changed:
            batch.retry[target] = exc
    except GraphError as exc:
        missing = missing_permissions(exc, f"{batch.scope.name} installations")
        if missing is not None:
            batch.missing = missing  # not this target's failure: the run's, and it stops
        else:
            batch.add(graph_outcome(target, exc))
    else:
        return True if result is None else result
    return None
