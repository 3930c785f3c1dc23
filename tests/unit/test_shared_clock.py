"""The clock the instances share: the storage service's time, estimated from the Date headers (and the
ETags of writes) of storage responses timed on the local monotonic clock. A fake service and a fake
host: the service's clock is the true time, the host's wall clock is off by `skew`."""

from __future__ import annotations

import logging
import math
import random
from datetime import UTC, datetime
from email.utils import formatdate
from urllib.parse import quote

import pytest

from shared.foundation.clock_offset import RESTART_AFTER
from shared.foundation.server_time import date_seconds, write_stamp
from shared.foundation.shared_clock import SharedClock

START = 1_796_533_019.25  # the service's time when a world begins (a quarter past a second)


class World:
    def __init__(self, skew: float = 0.0) -> None:
        self.true = START  # the storage service's clock
        self.skew = skew
        self.boot = START - 5_000.0  # the monotonic clock counts from the host's start
        self.clock = SharedClock(wall=lambda: self.true + self.skew, monotonic=lambda: self.true - self.boot)
        self.rand = random.Random(7)  # noqa: S311 - reproducible timings, no secrets

    def request(
        self,
        rtt: float = 0.004,
        *,
        served_at: float = 0.5,
        shift: float = 0.0,
        date_lag: float = 0.0,
        write: bool = False,
        headers: dict[str, str] | None = None,
    ) -> None:
        """One storage request taking `rtt` seconds, answered `served_at` of the way through by a server
        whose clock is `shift` seconds off the service's (one front end behind the others), with a Date
        header that changes `date_lag` seconds after each of its seconds (one it caches)."""
        sent = self.true - self.boot
        served = self.true + rtt * served_at + shift
        self.true += rtt
        if headers is None:
            headers = {"Date": formatdate(math.floor(served - date_lag), usegmt=True)}
            if write:
                stamp = datetime.fromtimestamp(served, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                headers["ETag"] = f"W/\"datetime'{quote(stamp)}'\""
        self.clock.observe("PUT" if write else "GET", 204 if write else 200, headers, sent, self.true - self.boot)

    def traffic(self, seconds: float, *, write: bool = False, rtt: float = 0.004) -> None:
        """Requests one after another, about 27 a second at random moments, as a busy process sends them."""
        end = self.true + seconds
        while self.true < end:
            self.request(rtt, write=write)
            self.true += self.rand.expovariate(27)

    def error(self) -> float:
        """How far the shared clock is from the service's."""
        return abs(self.clock.now() - self.true)


def clock_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == "clock"]


def test_a_host_whose_clock_is_right_keeps_it_to_the_microsecond():
    world = World(skew=0.0)
    for _ in range(100):
        world.traffic(0.05)
        assert world.clock.now() == pytest.approx(world.true, abs=1e-6)
    offset = world.clock.offset()
    assert offset is not None and abs(offset.seconds) <= offset.error <= 0.004


@pytest.mark.parametrize("skew", [0.1, 0.3, -0.3, 1.0, -1.0, 30.0])
def test_the_ticks_of_the_date_header_bring_a_host_that_is_off_to_the_service_s_time(skew):
    world = World(skew)
    assert world.error() == pytest.approx(abs(skew))  # nothing heard from storage yet: the host's own clock
    world.traffic(1.5)
    assert world.error() <= 0.1  # reads on both sides of one tick of the service's Date header
    world.traffic(10)
    assert world.error() <= 0.02  # every tick adds its reads: the ones closest to a tick bound the offset
    offset = world.clock.offset()
    assert abs(offset.seconds - skew) <= offset.error <= 0.02


@pytest.mark.parametrize("skew", [0.3, -1.0])
def test_timed_writes_bring_it_to_about_half_a_round_trip(skew):
    world = World(skew)
    world.traffic(1, write=True)
    offset = world.clock.offset()
    assert abs(offset.seconds - skew) <= offset.error <= 0.0025 + 1e-5  # half of 4 ms and of the stamps' millisecond
    assert world.error() <= 2 * offset.error


def test_before_a_tick_the_date_bounds_the_offset_to_a_second_and_nothing_finer():
    world = World(skew=0.3)
    world.traffic(0.5)  # 0.25 s to 0.75 s past a second: no tick yet
    offset = world.clock.offset()
    assert 0.25 < offset.error < 0.3  # a second, less the half second the reads span, halved
    assert world.error() <= 0.3  # the host's own clock, brought within the interval storage allows


def test_one_timed_write_is_enough_its_etag_tells_the_time_of_the_write():
    world = World(skew=-0.7)
    world.request(rtt=0.006, write=True)
    assert world.error() <= 0.006
    assert world.clock.offset().seconds == pytest.approx(-0.7, abs=0.004)


def test_a_read_s_etag_is_an_older_write_s_time_and_tells_nothing():
    world = World(skew=0.5)
    an_hour_ago = datetime.fromtimestamp(START - 3600, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    world.request(headers={"ETag": f"W/\"datetime'{quote(an_hour_ago)}'\""})  # a GET, and no Date
    assert world.clock.offset() is None
    assert world.error() == pytest.approx(0.5)


@pytest.mark.parametrize("skew", [0.0, 0.25, -1.0])
def test_under_jitter_the_service_s_time_is_always_within_the_estimate_and_the_estimate_narrows(skew):
    world = World(skew)
    for _ in range(1500):  # about 30 s of traffic: round trips of 1 to 60 ms, answered at any point of them
        world.request(rtt=world.rand.uniform(0.001, 0.06), served_at=world.rand.random())
        world.true += world.rand.expovariate(50)
        offset = world.clock.offset()
        assert abs(offset.seconds - skew) <= offset.error + 1e-9
        if skew == 0.0:
            assert world.clock.now() == pytest.approx(world.true, abs=1e-6)  # a right clock is never moved
    assert world.clock.offset().error < 0.01
    assert world.error() < 0.02


def test_date_headers_that_change_late_do_not_spoil_what_the_write_times_say(caplog):
    world = World(skew=0.5)
    for _ in range(300):
        world.request(write=True, date_lag=0.3)
        world.true += world.rand.expovariate(27)
    assert world.error() <= 0.004
    assert world.clock.offset().seconds == pytest.approx(0.5, abs=0.004)
    assert not [r for r in clock_records(caplog) if r.levelno >= logging.WARNING and "off the storage" not in r.getMessage()]


def test_a_date_that_jumps_back_once_changes_nothing(caplog):
    world = World(skew=0.3)
    world.traffic(12)  # reads only: the Date headers are all there is
    before = world.clock.now() - world.true
    world.request(shift=-1.0)  # one front end a second behind
    assert world.clock.now() - world.true == pytest.approx(before, abs=1e-6)  # but for the drift allowed meanwhile
    world.traffic(1)
    assert world.error() <= 0.02
    assert not [r for r in clock_records(caplog) if r.levelno >= logging.WARNING and "moved" in r.getMessage()]


def test_when_the_service_s_clock_steps_the_estimate_follows_and_says_so(caplog):
    world = World(skew=0.0)
    world.traffic(3)
    world.skew = 1.0  # seen from the host: the service's clock stepped a second back (or the host's ahead)
    world.true -= 1.0
    world.boot -= 1.0  # the host's monotonic clock went on, of course
    for _ in range(RESTART_AFTER):
        world.request(write=True)
    assert any("moved" in r.getMessage() for r in clock_records(caplog))
    world.traffic(1, write=True)
    assert world.error() <= 0.004
    assert world.clock.offset().seconds == pytest.approx(1.0, abs=0.004)


def test_answers_that_keep_disagreeing_are_not_trusted_and_the_host_s_clock_paces(caplog):
    world = World(skew=0.2)
    for i in range(200):  # two front ends half a second apart, taking turns
        world.request(write=True, shift=0.5 * (i % 2))
        world.true += 0.02
    assert world.clock.offset() is None
    assert world.error() == pytest.approx(0.2)
    assert [r for r in clock_records(caplog) if "disagree" in r.getMessage()]


@pytest.mark.parametrize("headers", [{}, {"Date": "yesterday"}, {"Date": ""}])
def test_without_a_usable_date_header_the_host_s_own_clock_paces_and_says_so_once(headers, caplog):
    world = World(skew=0.4)
    for _ in range(50):
        world.request(headers=dict(headers))
    assert world.clock.offset() is None
    assert world.error() == pytest.approx(0.4)
    [record] = clock_records(caplog)
    assert record.levelno == logging.WARNING and "no usable Date header" in record.getMessage()


def test_an_idle_process_s_estimate_widens_with_the_drift_and_stays_sound():
    world = World(skew=0.3)
    world.traffic(3, write=True)
    world.true += 3600  # an hour without a storage request, while the host's monotonic clock gained 0.1 s (28 ppm)
    world.boot -= 0.1
    idle = world.clock.offset()
    assert abs(idle.seconds - 0.3) <= idle.error < 0.2
    assert world.error() <= 2 * idle.error
    world.request(write=True)
    assert world.clock.offset().error <= 0.003


def test_the_offset_is_logged_once_known_and_again_only_when_it_moves(caplog):
    caplog.set_level(logging.INFO)
    world = World(skew=0.3)
    world.traffic(5, write=True)
    [said] = clock_records(caplog)
    assert said.levelno == logging.WARNING  # a host 0.3 s off is worth a warning
    assert said.clockOffset == pytest.approx(0.3, abs=0.004) and said.clockError <= 0.004
    world.skew = 0.35  # the host's clock stepped (storage's did not)
    world.traffic(1, write=True)
    [_, again] = clock_records(caplog)
    assert again.clockOffset == pytest.approx(0.35, abs=0.004)


def test_what_a_response_says_about_the_service_s_time():
    assert date_seconds("Sun, 06 Dec 2026 04:56:59 GMT") == datetime(2026, 12, 6, 4, 56, 59, tzinfo=UTC).timestamp()
    assert date_seconds("not a date") is None
    azure = {"ETag": "W/\"datetime'2026-12-06T04%3A56%3A59.6234567Z'\""}  # Azure's stamps: 100 ns
    assert write_stamp("MERGE", 204, azure) == pytest.approx(datetime(2026, 12, 6, 4, 56, 59, 623456, tzinfo=UTC).timestamp())
    assert write_stamp("GET", 200, azure) is None  # a read's ETag: when the entity was written, not now
    assert write_stamp("PUT", 412, azure) is None  # nothing was written
    assert write_stamp("PUT", 204, {"ETag": '"0x8DC2A5D2C1B4C3E"'}) is None  # a queue's or a blob's ETag tells no time
