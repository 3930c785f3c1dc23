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

        `chats` maps chat ids to the ETags of their rows when the caller knows them."""
        if not chats:
            return 0
        chat_ids = list(chats)
        etags = list(chats.values()) if isinstance(chats, Mapping) else []
        queue = self._storage.queue(CHATS_QUEUE)
        start = self._pacer.plan(INSTALLED_APPS_GET, len(chat_ids), speedup=RELEASE_SPEEDUP)
        size = self._chats_per_message
        now = self._clock()
        for offset in range(0, len(chat_ids), size):
            due = start + offset * self._pacer.interval / RELEASE_SPEEDUP
            message = UpgradeChats(
                run_id=run_id, chat_ids=tuple(chat_ids[offset : offset + size]), etags=tuple(etags[offset : offset + size])
            )
            delay = min(int(max(0.0, due - now)), MAX_VISIBILITY_DELAY)
            queue.send_message(message.encode(), visibility_timeout=delay or None)
        return -(-len(chat_ids) // size)

    def requeue_chats(self, message: UpgradeChats, delay: int) -> None:
        self._storage.queue(CHATS_QUEUE).send_message(
            message.encode(), visibility_timeout=min(max(0, delay), MAX_VISIBILITY_DELAY) or None
        )
