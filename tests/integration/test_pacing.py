"""Pacing that holds across processes: the whole app stays under GRAPH_MAX_RPS per bucket and one
request per second per chat, and backs off together on Retry-After."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from devtools.loopback import max_in_window
from shared.foundation.settings import StorageSettings
from shared.foundation.shared_clock import Offset, SharedClock
from shared.foundation.storage import PACING_TABLE, Storage
from shared.pacing.pacer import LATE_TOLERANCE, REPORT_SECONDS, Pacer
from shared.pacing.schedule import TableSchedule


def send_from(pacers: list[Pacer]) -> tuple[list[float], float]:
    """Three threads per pacer send 15 requests each as their slots come; when each left (on the
    machine's clock, which is storage's and Graph's here), and how long it all took."""
    sent: list[float] = []
    lock = threading.Lock()

    def send(pacer: Pacer) -> None:
        for _ in range(15):
            pacer.acquire("bucket")
            with lock:
                sent.append(time.time())

    threads = [threading.Thread(target=send, args=(pacer,)) for pacer in pacers for _ in range(3)]
    started = time.time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sent, time.time() - started


def test_two_schedules_never_hand_out_more_than_the_rate(azurite, app_env):
    rate = 20
    pacers = [
        Pacer(
            schedule=TableSchedule(Storage(StorageSettings(connection_string=azurite.connection_string)).table(PACING_TABLE)),
            rate=rate,
        )
        for _ in range(2)  # two "instances": separate clients, shared table
    ]

    sent, elapsed = send_from(pacers)

    assert len(sent) == 90
    assert max_in_window(sent) <= rate
    assert elapsed >= (90 - rate) / rate  # nobody got more than its share


def test_storage_s_answers_time_the_clock_of_a_host_that_is_off(azurite, app_env):
    # Azurite runs on this machine: its clock is the test's, and the host's below is 0.4 s ahead of it
    settings = StorageSettings(connection_string=azurite.connection_string)
    storage = Storage(settings, clock=SharedClock(wall=lambda: time.time() + 0.4))
    assert storage.clock.now() == pytest.approx(time.time() + 0.4, abs=0.01)  # nothing heard yet: its own clock
    storage.queue("clockcheck").send_message("tick")
    assert storage.clock.offset() is not None  # queue responses tell the time too (their Date, to the second)
    storage.time_clock()  # one table write: its ETag tells the time of the write
    offset = storage.clock.offset()
    assert abs(offset.seconds - 0.4) <= offset.error < 0.05
    assert storage.clock.now() == pytest.approx(time.time(), abs=2 * offset.error + 0.002)


def test_instances_whose_clocks_disagree_by_a_second_still_never_hand_out_more_than_the_rate(azurite, app_env):
    rate = 20
    pacers = []
    for skew in (-0.5, 0.5):  # two "instances" a second apart, neither on the right time
        storage = Storage(
            StorageSettings(connection_string=azurite.connection_string), clock=SharedClock(wall=lambda s=skew: time.time() + s)
        )
        storage.time_clock()
        pacers.append(Pacer(schedule=TableSchedule(storage.table(PACING_TABLE)), rate=rate, clock=storage.clock.now))

    sent, elapsed = send_from(pacers)

    assert len(sent) == 90
    assert max_in_window(sent) <= rate
    assert elapsed < (90 + rate) / rate  # and neither waited for the other's clock


def test_retry_after_pushes_every_instance_back(azurite, app_env):
    table = PACING_TABLE
    first = Pacer(
        schedule=TableSchedule(Storage(StorageSettings(connection_string=azurite.connection_string)).table(table)), rate=50
    )
    second = Pacer(
        schedule=TableSchedule(Storage(StorageSettings(connection_string=azurite.connection_string)).table(table)), rate=50
    )
    first.acquire("b")
    second.acquire("b")
    first.backoff("b", 1.5)
    pushed = time.time()
    slot = second.acquire("b")
    assert slot >= pushed + 1.4


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
