"""ISO 8601 durations as bakes and settings give them."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.foundation.durations import DurationError, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PT4H", timedelta(hours=4)),
        ("P2D", timedelta(days=2)),
        ("PT90M", timedelta(minutes=90)),
        ("P1W", timedelta(weeks=1)),
        ("P1DT12H", timedelta(days=1, hours=12)),
        ("PT0.5S", timedelta(seconds=0.5)),
        ("pt30m", timedelta(minutes=30)),
        (" P90D ", timedelta(days=90)),
    ],
)
def test_durations_that_are_accepted(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "P", "PT", "4H", "PT4", "P1H", "PT-1H", "P1DT", "1 day", "PT4H30"])
def test_malformed_durations_are_refused(text):
    with pytest.raises(DurationError, match="ISO 8601"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["P1Y", "P3M", "P1Y2D"])
def test_years_and_months_are_refused_with_the_reason(text):
    with pytest.raises(DurationError, match="years or months"):
        parse_duration(text)


def test_a_duration_that_is_not_a_string_is_refused():
    with pytest.raises(DurationError):
        parse_duration(3600)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("duration", "text"),
    [
        (timedelta(hours=48), "P2D"),
        (timedelta(minutes=5), "PT5M"),
        (timedelta(days=1, seconds=1), "P1DT1S"),
        (timedelta(0), "PT0S"),
    ],
)
def test_durations_format_back(duration, text):
    assert format_duration(duration) == text
    assert parse_duration(text) == duration
