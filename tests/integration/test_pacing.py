"""Pacing that holds across processes: the whole app stays under GRAPH_MAX_RPS per bucket and one
request per second per chat, and backs off together on Retry-After."""

from __future__ import annotations

import threading
import time

import pytest

from devtools.loopback import max_in_window
from shared.foundation.settings import StorageSettings
from shared.foundation.shared_clock import SharedClock
from shared.foundation.storage import PACING_TABLE, Storage
from shared.pacing.pacer import Pacer
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
