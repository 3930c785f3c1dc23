"""Pacing arithmetic on a fake clock and a schedule in memory: slots on time however slow the
schedule's storage, blocks only for announced requests, last-moment work before the slot, and the
half-minute report. Across processes and Azurite: tests/integration/test_pacing.py."""

from __future__ import annotations

import logging

from shared.foundation.shared_clock import Offset
from shared.pacing.pacer import LATE_TOLERANCE, REPORT_SECONDS, Pacer


def test_slow_reservations_on_an_idle_schedule_still_give_slots_that_are_on_time():
    """A block reserved on an idle schedule starts when the reservation is expected back, so its
    first slot is not already late (a late send would crowd the next second's requests)."""
    now = [1000.0]

    class SlowSchedule:
        reservations = 0

        def reserve(self, key: str, count: int, interval: float, earliest: float) -> float:
            self.reservations += 1
            now[0] += 0.04  # each reservation takes 40 ms
            return earliest

    schedule = SlowSchedule()
    pacer = Pacer(schedule=schedule, rate=30, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    lateness = []
    for _ in range(20):
        now[0] += 0.5  # idle between requests
        slot = pacer.acquire("b")
        lateness.append(now[0] - slot)

    assert schedule.reservations == 20  # a caller's own block is never dropped, however slow storage is
    assert max(lateness[3:]) <= LATE_TOLERANCE  # once the first reservations showed how long they take


class MemorySchedule:
    """The shared schedule's contract in memory (blocks never overlap): two pacers on one stand for
    two instances."""

    def __init__(self) -> None:
        self.next: dict[str, float] = {}

    def reserve(self, key: str, count: int, interval: float, earliest: float) -> float:
        start = max(self.next.get(key, 0.0), earliest)
        self.next[key] = start + count * interval
        return start


def _handover_wait(announce: bool) -> float:
    """One instance sends 60 requests one after another, then stops; how long the other instance's
    first request waits after the first one's last (in slots)."""
    now = [1000.0]
    clock, sleep = (lambda: now[0]), (lambda s: now.__setitem__(0, now[0] + s))
    schedule = MemorySchedule()
    first, second = (Pacer(schedule=schedule, rate=40, clock=clock, sleep=sleep) for _ in range(2))
    for left in reversed(range(60)):
        last = first.acquire("b", more=left if announce else None)
        now[0] += 0.005  # the request itself
    return (second.acquire("b") - last) / first.interval


def test_slots_are_reserved_only_for_requests_that_were_announced():
    # a caller that says how many requests follow gets no block beyond them: when it stops, the
    # other instances are not kept waiting behind slots nobody will use
    assert _handover_wait(announce=True) < 1.5
    # without it, the demand of the last second is expected to go on, and a quarter of it passes unused
    assert _handover_wait(announce=False) > 5


def _prepared_send(*prepare_seconds: float) -> tuple[float, float, float]:
    """One request whose last-moment work (a cancel check, a token) takes `prepare_seconds`, one
    figure per time it runs: when that work first began, the request's slot, and when it left."""
    now = [1000.0]
    clock, sleep = (lambda: now[0]), (lambda s: now.__setitem__(0, now[0] + s))
    pacer = Pacer(schedule=MemorySchedule(), rate=30, clock=clock, sleep=sleep)
    pacer.acquire("b", more=1)  # the schedule is in use: the next slot lies ahead
    began: list[float] = []

    def prepare() -> None:
        began.append(now[0])
        now[0] += prepare_seconds[len(began) - 1]

    slot = pacer.acquire("b", more=0, prepare=prepare)
    return began[0], slot, now[0]


def test_work_between_a_slot_and_its_request_is_done_before_the_slot():
    # a storage read or a token fetch after the slot would make the request leave late, and late
    # requests bunch with the on-time ones after them into more than the limit in a second
    began, slot, sent = _prepared_send(0.004)
    assert slot - 0.05 < began < slot
    assert sent == slot
    # work that overruns the slot gives it up: the request takes a later slot, prepared again
    began, slot, sent = _prepared_send(0.2, 0.004)
    assert slot > began + 0.2
    assert sent == slot
    # work that is always slow (storage slower than ever) does not keep the request from leaving
    began, slot, sent = _prepared_send(*[0.2] * 10)
    assert 0.1 < sent - slot < 0.2


def test_each_pacing_report_says_how_far_the_host_s_clock_is_from_the_shared_one(caplog):
    caplog.set_level(logging.INFO)
    now = [1000.0]
    pacer = Pacer(
        schedule=MemorySchedule(),
        rate=30,
        clock=lambda: now[0],
        sleep=lambda s: now.__setitem__(0, now[0] + s),
        clock_offset=lambda: Offset(seconds=0.3012, error=0.0021),
    )
    for _ in range(2):  # the first acquire starts the half minute, the second reports it
        pacer.acquire("b")
        now[0] += REPORT_SECONDS
    [report] = [r for r in caplog.records if getattr(r, "event", None) == "pacing"]
    assert (report.clockOffset, report.clockError) == (0.3012, 0.0021)
    assert "+0.3012 s (±0.0021 s) off storage's" in report.getMessage()
