"""ISO 8601 durations, as rollout bakes and settings give them: `PT4H`, `P2D`, `PT90M`, `P1W`, `PT0.5S`.

Years and months are refused: their length depends on the calendar, and a bake or a retention
period must mean the same number of hours whatever day it starts (write `P90D`, not `P3M`)."""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION = re.compile(
    r"^P(?!$)(?:(?P<weeks>\d+(?:\.\d+)?)W)?(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?!$)(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)
_CALENDAR = re.compile(r"^P(?:\d+(?:\.\d+)?Y|(?:\d+(?:\.\d+)?Y)?\d+(?:\.\d+)?M)")


class DurationError(ValueError):
    """Not an ISO 8601 duration this app accepts; the message says why."""


def parse_duration(text: str) -> timedelta:
    """The duration `text` stands for; DurationError when it is not one."""
    if not isinstance(text, str):
        raise DurationError("must be an ISO 8601 duration string such as PT4H")
    value = text.strip().upper()
    match = _DURATION.match(value)
    if match is None:
        if _CALENDAR.match(value):
            raise DurationError(f"{text!r} uses years or months, whose length varies; give days, hours or minutes (e.g. P90D)")
        raise DurationError(f"{text!r} is not an ISO 8601 duration such as PT4H, P2D or PT30M")
    parts = {name: float(number) for name, number in match.groupdict().items() if number is not None}
    return timedelta(**parts)


def format_duration(duration: timedelta) -> str:
    """The shortest ISO 8601 form of a whole number of seconds (for messages and defaults)."""
    seconds = int(duration.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    time = "".join(f"{n}{unit}" for n, unit in ((hours, "H"), (minutes, "M"), (seconds, "S")) if n)
    return "P" + (f"{days}D" if days else "") + (f"T{time}" if time else "") if days or time else "PT0S"
