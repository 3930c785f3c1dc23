"""Sending work to the queues. Chat batches are spread over time: each message becomes visible
about when the pacing schedule expects its chats' first request, so the queue delivers work at the
rate Graph accepts instead of all at once (and the platform does not scale out to instances that
would only wait for pacing slots). Work is released a little faster than the pacing rate
(RELEASE_SPEEDUP): the small visible backlog absorbs queue polling delays, which would otherwise
cost throughput for good; the pacer, not the queue, is what holds the rate."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping

from shared.messages import UpgradeChats
from shared.runs import by_partition
from shared.storage import CHATS_QUEUE, CONTROL_QUEUE, Storage
from shared.upgrade import INSTALLED_APPS_GET

MAX_VISIBILITY_DELAY = 7 * 24 * 3600 - 60
RELEASE_SPEEDUP = 1.25


class Dispatcher:
    def __init__(self, *, storage: Storage, pacer, chats_per_message: int, clock: Callable[[], float] = time.time) -> None:
        self._storage = storage
        self._pacer = pacer
        self._chats_per_message = chats_per_message
        self._clock = clock

    def send_steps(self, steps: Iterable[tuple[str, int]]) -> None:
        """Control-queue messages as (encoded message, visibility delay in seconds)."""
        queue = self._storage.queue(CONTROL_QUEUE)
        for text, delay in steps:
            queue.send_message(text, visibility_timeout=min(max(0, int(delay)), MAX_VISIBILITY_DELAY) or None)

    def send_chats(self, run_id: str, chats: list[str] | Mapping[str, str]) -> int:
        """Queues chats in batches, scheduled at the pacing rate; returns the number of messages.

        `chats` maps chat ids to the ETags of their rows when the caller knows them. Chats are
        ordered by chat partition, so that most batches are recorded in one table transaction, and
        the batches are then taken one partition after another, so that batches processed at the
        same time do not contend for the same counter rows."""
        if not chats:
            return 0
        etags = chats if isinstance(chats, Mapping) else {}
        groups = by_partition(run_id, chats)
        ordered = [chat_id for group in groups.values() for chat_id in group]
        size = self._chats_per_message
        batches = [ordered[i : i + size] for i in range(0, len(ordered), size)]
        stride = -(-len(batches) // len(groups))  # batches per partition, about
        batches = [batch for first in range(stride) for batch in batches[first::stride]]
        queue = self._storage.queue(CHATS_QUEUE)
        start = self._pacer.plan(INSTALLED_APPS_GET, len(chats), speedup=RELEASE_SPEEDUP)
        now = self._clock()
        sent = 0
        for batch in batches:
            due = start + sent * self._pacer.interval / RELEASE_SPEEDUP
            message = UpgradeChats(run_id=run_id, chat_ids=tuple(batch), etags=tuple(etags[c] for c in batch) if etags else ())
            delay = min(int(max(0.0, due - now)), MAX_VISIBILITY_DELAY)
            queue.send_message(message.encode(), visibility_timeout=delay or None)
            sent += len(batch)
        return len(batches)

    def requeue_chats(self, message: UpgradeChats, delay: int) -> None:
        self._storage.queue(CHATS_QUEUE).send_message(
            message.encode(), visibility_timeout=min(max(0, delay), MAX_VISIBILITY_DELAY) or None
        )
