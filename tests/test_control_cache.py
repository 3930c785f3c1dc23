"""How a process reads a run's steering (cancelled, paused): never a storage read between a request's
pacing slot and its send while the last read is young enough, and never older than a cancel waits."""

from __future__ import annotations

import threading

from shared.bootstrap import CONTROL_STALE_OK, CONTROL_TTL, Services
from shared.domain.runs import Control
from tests.conftest import wait_for


class SlowRuns:
    """A run store whose control reads block until released, and are counted."""

    def __init__(self) -> None:
        self.reads = 0
        self.release = threading.Event()
        self.value = Control()

    def control(self, run_id: str) -> Control:
        self.release.wait(10)
        self.reads += 1
        return self.value


def _services(runs: SlowRuns, now: list[float]) -> Services:
    return Services(
        settings=None,
        storage=None,
        runs=runs,
        targets=None,
        pacer=None,
        graph=None,
        dispatcher=None,
        tracking=None,
        registry=None,
        clock=lambda: now[0],
    )


def test_an_aging_read_is_renewed_in_the_background_and_only_a_stale_one_is_waited_for():
    now = [100.0]
    runs = SlowRuns()
    services = _services(runs, now)
    runs.release.set()
    assert services.control("r") == Control() and runs.reads == 1  # nothing cached: read now

    runs.release.clear()
    runs.value = Control(cancelled_at="2026-12-03T10:00:00Z")
    now[0] += CONTROL_TTL + 0.01
    # past its time to live, the read is renewed beside the caller, who goes on with it at once
    assert services.control("r").cancelled_at is None
    assert services.control("r").cancelled_at is None  # one renewal at a time: this caller starts none
    runs.release.set()
    assert wait_for(lambda: services.control("r").cancelled_at) == "2026-12-03T10:00:00Z"
    assert runs.reads == 2

    now[0] += CONTROL_STALE_OK + 0.01  # too old to trust: this caller reads, and waits for it
    services.control("r")
    assert runs.reads == 3
