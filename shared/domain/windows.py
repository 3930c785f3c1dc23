"""Maintenance windows: the hours, in a time zone, on chosen days, when a run may decide targets.

A window opens on each listed day at `start` (local time) and closes at `end`; when `end` is not
after `start` it closes the next day (an overnight window belongs to the day it opens). Daylight
saving: a start or end that a spring-forward night skips happens at the first valid minute after
the gap; one that a fall-back night repeats happens at its first occurrence."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_KEYS = ("timeZone", "days", "start", "end")


def _zone(name: object, where: str) -> ZoneInfo:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{where}.timeZone must be an IANA time zone name such as Europe/Berlin")
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{where}.timeZone {name!r} is not a known IANA time zone (e.g. Europe/Berlin, America/New_York)"
        ) from None


def _clock(value: object, where: str) -> time:
    match = _CLOCK.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"{where} must be a time HH:MM from 00:00 to 23:59, got {value!r}")
    return time(int(match.group(1)), int(match.group(2)))


def _days(value: object, where: str) -> tuple[int, ...]:
    if value is None:
        return tuple(range(7))
    if not isinstance(value, list) or not value or not all(isinstance(d, str) for d in value):
        raise ValueError(f"{where}.days must be a non-empty array of {', '.join(DAYS)}")
    unknown = [d for d in value if d not in DAYS]
    if unknown:
        raise ValueError(f"{where}.days holds {unknown[0]!r}, not one of {', '.join(DAYS)}")
    if len(set(value)) != len(value):
        raise ValueError(f"{where}.days lists a day twice")
    return tuple(sorted(DAYS.index(d) for d in value))


@dataclass(frozen=True)
class Window:
    time_zone: str
    days: tuple[int, ...]  # 0 is Monday
    start: time
    end: time

    @classmethod
    def parse(cls, data: object, where: str = "window") -> Window:
        """A window from its JSON form; ValueError naming the field when it is malformed."""
        if not isinstance(data, dict):
            raise ValueError(f'{where} must be an object: {{"timeZone": ..., "days": [...], "start": "HH:MM", "end": "HH:MM"}}')
        unknown = sorted(set(data) - set(_KEYS))
        if unknown:
            raise ValueError(f"{where} has unknown key(s) {', '.join(unknown)}; allowed: {', '.join(_KEYS)}")
        for key in ("start", "end"):
            if key not in data:
                raise ValueError(f"{where}.{key} is required (HH:MM)")
        zone = _zone(data.get("timeZone"), where)
        return cls(
            str(zone.key),
            _days(data.get("days"), where),
            _clock(data["start"], f"{where}.start"),
            _clock(data["end"], f"{where}.end"),
        )

    def to_dict(self) -> dict:
        return {
            "timeZone": self.time_zone,
            "days": [DAYS[d] for d in self.days],
            "start": self.start.strftime("%H:%M"),
            "end": self.end.strftime("%H:%M"),
        }

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    def _instant(self, day: date, at: time) -> datetime:
        """The UTC instant of a local wall time; in a gap, the first valid minute after it."""
        zone = self.zone
        wall = datetime.combine(day, at)
        for _ in range(24 * 60):
            local = wall.replace(tzinfo=zone)
            instant = local.astimezone(UTC)
            if instant.astimezone(zone).replace(tzinfo=None) == wall:
                return instant
            wall += timedelta(minutes=1)
        raise ValueError(f"no valid local time near {day} {at} in {self.time_zone}")  # no zone skips a whole day

    def opening(self, day: date) -> tuple[datetime, datetime]:
        """When the window that opens on local `day` opens and closes (UTC)."""
        opens = self._instant(day, self.start)
        closes = self._instant(day if self.end > self.start else day + timedelta(days=1), self.end)
        return opens, closes

    def _openings(self, now: datetime, days_ahead: int) -> list[tuple[datetime, datetime]]:
        today = now.astimezone(self.zone).date()
        days = [today + timedelta(days=n) for n in range(-1, days_ahead + 1)]
        return [self.opening(day) for day in days if day.weekday() in self.days]

    def is_open(self, now: datetime) -> bool:
        return any(opens <= now < closes for opens, closes in self._openings(now, 0))

    def next_opening(self, now: datetime) -> datetime | None:
        """None while open; otherwise when it opens next (UTC)."""
        if self.is_open(now):
            return None
        return min(opens for opens, _ in self._openings(now, 8) if opens > now)

    def closes_at(self, now: datetime) -> datetime | None:
        """While open, when it closes (UTC)."""
        return next((closes for opens, closes in self._openings(now, 0) if opens <= now < closes), None)
