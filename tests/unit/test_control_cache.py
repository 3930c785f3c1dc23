"""How a process reads a run's steering (cancelled, paused): never a storage read between a request's
pacing slot and its send while the last read is young enough, and never older than a cancel waits."""

from __future__ import annotations

import threading

from shared.domain.steering import Steering
from shared.steering.commands import STEERING_STALE_OK
from shared.stores.run_cache import STEERING_TTL, RunCache
from tests.support import wait_for


class SlowRuns:
    """A run store whose steering reads block until released, and are counted."""

    def __init__(self) -> None:
        self.reads = 0
        self.release = threading.Event()
        self.value = Steering()

    def steering(self, run_id: str) -> Steering:
        self.release.wait(10)
        self.reads += 1
        return self.value


def test_an_aging_read_is_renewed_in_the_background_and_only_a_stale_one_is_waited_for():
    now = [100.0]
    runs = SlowRuns()
    cache = RunCache(runs, stale_ok=STEERING_STALE_OK, clock=lambda: now[0])
    runs.release.set()
    assert cache.cached_steering("r") == Steering() and runs.reads == 1  # nothing cached: read now

    runs.release.clear()
    runs.value = Steering(cancelled_at="2026-12-03T10:00:00Z")
    now[0] += STEERING_TTL + 0.01
    # past its time to live, the read is renewed beside the caller, who goes on with it at once
    assert cache.cached_steering("r").cancelled_at is None
    assert cache.cached_steering("r").cancelled_at is None  # one renewal at a time: this caller starts none
    runs.release.set()
    assert wait_for(lambda: cache.cached_steering("r").cancelled_at) == "2026-12-03T10:00:00Z"
    assert runs.reads == 2

    now[0] += STEERING_STALE_OK + 0.01  # too old to trust: this caller reads, and waits for it
    cache.cached_steering("r")
    assert runs.reads == 3
