"""Maintenance windows: when a run may decide targets, in the window's own time zone."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.domain.windows import Window


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def window(**data) -> Window:
    return Window.parse({"timeZone": "Europe/Berlin", "start": "20:00", "end": "06:00", **data})


def test_an_overnight_window_belongs_to_the_day_it_opens():
    w = window(days=["Mon", "Tue", "Wed", "Thu"])
    # Thursday 2026-12-03 20:00 Berlin (UTC+1) opens; Friday 06:00 closes
    assert not w.is_open(utc("2026-12-03T18:59:00"))
    assert w.is_open(utc("2026-12-03T19:00:00"))
    assert w.is_open(utc("2026-12-04T04:59:59"))  # Friday morning: still Thursday's window
    assert not w.is_open(utc("2026-12-04T05:00:00"))
    # Friday evening has no window: the next opens Monday 20:00
    assert w.next_opening(utc("2026-12-04T05:00:00")) == utc("2026-12-07T19:00:00")
    assert w.closes_at(utc("2026-12-03T23:00:00")) == utc("2026-12-04T05:00:00")
    assert w.next_opening(utc("2026-12-03T23:00:00")) is None


def test_a_day_window_and_every_day_by_default():
    w = Window.parse({"timeZone": "UTC", "start": "09:00", "end": "17:00"})
    assert w.days == tuple(range(7))
    assert w.is_open(utc("2026-12-06T09:00:00")) and not w.is_open(utc("2026-12-06T17:00:00"))
    assert w.next_opening(utc("2026-12-06T17:00:00")) == utc("2026-12-07T09:00:00")


def test_spring_forward_opens_a_skipped_start_at_the_first_valid_minute():
    # Europe/Berlin skips 02:00-03:00 on Sunday 2026-03-29: a window starting 02:30 opens at 03:00 CEST (01:00 UTC)
    w = Window.parse({"timeZone": "Europe/Berlin", "days": ["Sun"], "start": "02:30", "end": "05:00"})
    assert w.next_opening(utc("2026-03-28T12:00:00")) == utc("2026-03-29T01:00:00")
    assert not w.is_open(utc("2026-03-29T00:59:00")) and w.is_open(utc("2026-03-29T01:00:00"))
    assert w.closes_at(utc("2026-03-29T02:00:00")) == utc("2026-03-29T03:00:00")  # 05:00 CEST
    # the week before and after, at the usual offsets
    assert w.next_opening(utc("2026-03-21T12:00:00")) == utc("2026-03-22T01:30:00")
    assert w.next_opening(utc("2026-03-30T12:00:00")) == utc("2026-04-05T00:30:00")


def test_fall_back_keeps_the_wall_clock_hours_and_the_first_of_a_repeated_time():
    # Europe/Berlin repeats 02:00-03:00 on Sunday 2026-10-25: an overnight window 22:00-06:00 lasts 9 hours that night
    w = window(start="22:00", end="06:00", days=["Sat"])
    opens, closes = w.opening(datetime(2026, 10, 24).date())
    assert opens == utc("2026-10-24T20:00:00") and closes == utc("2026-10-25T05:00:00")
    repeated = Window.parse({"timeZone": "Europe/Berlin", "days": ["Sun"], "start": "02:30", "end": "04:00"})
    assert repeated.next_opening(utc("2026-10-24T12:00:00")) == utc("2026-10-25T00:30:00")  # the first 02:30 (CEST)


def test_a_time_zone_far_from_utc_moves_the_day():
    # Pacific/Kiritimati is UTC+14: its Monday 08:00-10:00 is Sunday 18:00-20:00 UTC
    w = Window.parse({"timeZone": "Pacific/Kiritimati", "days": ["Mon"], "start": "08:00", "end": "10:00"})
    assert w.next_opening(utc("2026-12-06T00:00:00")) == utc("2026-12-06T18:00:00")
    assert w.is_open(utc("2026-12-06T19:30:00")) and not w.is_open(utc("2026-12-07T19:30:00"))
    # and America/Los_Angeles (UTC-8) Friday 23:00-01:00 runs into Saturday UTC
    la = Window.parse({"timeZone": "America/Los_Angeles", "days": ["Fri"], "start": "23:00", "end": "01:00"})
    assert la.is_open(utc("2026-12-05T08:30:00")) and not la.is_open(utc("2026-12-05T09:00:00"))


def test_round_trip_of_the_json_form():
    data = {"timeZone": "Europe/Berlin", "days": ["Mon", "Thu"], "start": "20:00", "end": "06:00"}
    assert Window.parse(data).to_dict() == data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"timeZone": "Mars/Olympus", "start": "20:00", "end": "06:00"}, "not a known IANA time zone"),
        ({"timeZone": "../etc/passwd", "start": "20:00", "end": "06:00"}, "not a known IANA time zone"),
        ({"start": "20:00", "end": "06:00"}, "timeZone must be an IANA"),
        ({"timeZone": "UTC", "start": "25:00", "end": "06:00"}, r"window.start must be a time HH:MM"),
        ({"timeZone": "UTC", "start": "20:00", "end": "6:00"}, r"window.end must be a time HH:MM"),
        ({"timeZone": "UTC", "end": "06:00"}, r"window.start is required"),
        ({"timeZone": "UTC", "start": "20:00"}, r"window.end is required"),
        ({"timeZone": "UTC", "start": "20:00", "end": "06:00", "days": ["Monday"]}, "'Monday', not one of"),
        ({"timeZone": "UTC", "start": "20:00", "end": "06:00", "days": []}, "non-empty array"),
        ({"timeZone": "UTC", "start": "20:00", "end": "06:00", "days": ["Mon", "Mon"]}, "twice"),
        ({"timeZone": "UTC", "start": "20:00", "end": "06:00", "weekdays": []}, "unknown key"),
    ],
)
def test_malformed_windows_are_refused_naming_the_field(data, message):
    with pytest.raises(ValueError, match=message):
        Window.parse(data)
