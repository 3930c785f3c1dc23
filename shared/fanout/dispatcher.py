"""Sending work to the queues. Target batches are spread over time: each message becomes visible
about when the pacing schedule expects its targets' first request, so the queue delivers work at
the rate Graph accepts instead of all at once (and the platform does not scale out to instances
that would only wait for pacing slots). Work is released a little faster than the pacing rate
(RELEASE_SPEEDUP): the small visible backlog absorbs queue polling delays, which would otherwise
cost throughput for good; the pacer, not the queue, is what holds the rate."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from shared.domain.messages import UpgradeTargets
from shared.domain.targets import Target
from shared.foundation.storage import CONTROL_QUEUE, TARGETS_QUEUE, Storage
from shared.scopes import scope as scope_named
from shared.stores.partitions import by_partition

MAX_VISIBILITY_DELAY = 7 * 24 * 3600 - 60
RELEASE_SPEEDUP = 1.25


@dataclass(frozen=True)
class Planned:
    """A batch to queue, and when it should become visible (epoch seconds)."""

    message: UpgradeTargets
    targets: tuple[Target, ...]
    due: float


def _delay(seconds: float) -> int | None:
    return min(max(0, int(seconds)), MAX_VISIBILITY_DELAY) or None


class Dispatcher:
    def __init__(self, *, storage: Storage, pacer, targets_per_message: int, clock: Callable[[], float] = time.time) -> None:
        self._storage = storage
        self._pacer = pacer
        self._size = targets_per_message
        self._clock = clock

    def send_steps(self, steps: Iterable[tuple[str, int]]) -> None:
        """Control-queue messages as (encoded message, visibility delay in seconds)."""
        queue = self._storage.queue(CONTROL_QUEUE)
        for text, delay in steps:
            queue.send_message(text, visibility_timeout=_delay(delay))

    def send_targets(
        self, run_id: str, targets: Iterable[Target] | Mapping[Target, str], *, claim: str | None = None, admitted: bool = False
    ) -> int:
        """Queues targets in batches of one scope, scheduled at the pacing rate of the scope's GET
        bucket; returns the number of messages. `targets` maps targets to the ETags of their rows
        when the caller knows them; `claim` lets the batches take over targets claimed by that chain;
        `admitted`: they are admitted to the current step of their run's plan."""
        planned = self.plan(run_id, targets, claim=claim, admitted=admitted)
        self.send(planned)
        return len(planned)

    def plan(
        self, run_id: str, targets: Iterable[Target] | Mapping[Target, str], *, claim: str | None = None, admitted: bool = False
    ) -> list[Planned]:
        """The batches for these targets and when each should become visible.

        Targets are ordered by partition, so that most batches are recorded in one table
        transaction, and the batches are then taken one partition after another, so that batches
        processed at the same time do not contend for the same counter rows. One release plan is
        reserved per scope, for all its targets at once."""
        etags = targets if isinstance(targets, Mapping) else {}
        by_scope: dict[str, list[Target]] = {}
        for target in targets:
            by_scope.setdefault(target.scope, []).append(target)
        return [p for name, group in by_scope.items() for p in self._plan_scope(run_id, name, group, etags, claim, admitted)]

    def _plan_scope(
        self, run_id: str, name: str, targets: list[Target], etags: Mapping[Target, str], claim: str | None, admitted: bool
    ) -> list[Planned]:
        groups = by_partition(run_id, targets, lambda t: t)
        ordered = [t for group in groups.values() for t in group]
        batches = [ordered[i : i + self._size] for i in range(0, len(ordered), self._size)]
        stride = -(-len(batches) // len(groups))  # batches per partition, about
        batches = [batch for first in range(stride) for batch in batches[first::stride]]
        start = self._pacer.plan(scope_named(name).get_bucket, len(targets), speedup=RELEASE_SPEEDUP)
        planned, sent = [], 0
        for batch in batches:
            message = UpgradeTargets(
                run_id=run_id,
                scope=name,
                ids=tuple(t.id for t in batch),
                claim=claim,
                etags=tuple(etags[t] for t in batch) if etags else (),
                admitted=admitted,
            )
            planned.append(Planned(message, tuple(batch), start + sent * self._pacer.interval / RELEASE_SPEEDUP))
            sent += len(batch)
        return planned

    def send(self, planned: Iterable[Planned]) -> None:
        queue = self._storage.queue(TARGETS_QUEUE)
        now = self._clock()
        for p in planned:
            queue.send_message(p.message.encode(), visibility_timeout=_delay(p.due - now))

    def requeue(self, message: UpgradeTargets, delay: int) -> None:
        self._storage.queue(TARGETS_QUEUE).send_message(message.encode(), visibility_timeout=_delay(delay))
