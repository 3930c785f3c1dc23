"""The clock every instance of the app agrees on: the storage service's.

The pacing schedule is shared by all instances and holds times; an instance whose clock is off by a
tenth of a second sends its slots a tenth of a second off the others' and crowds Graph's one-second
windows. Every storage response tells the service's time (see server_time), so each process keeps an
estimate of how far its own clock is from the service's (see clock_offset) and reads the time as
the service has it. While there is no estimate (no storage response yet, no usable header, answers
that disagree) it reads its own clock, as a single process may: it only has to agree with itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from shared.foundation.clock_offset import OffsetEstimate, Sample, Verdict
from shared.foundation.server_time import STAMP_RESOLUTION, date_seconds, write_stamp
from shared.foundation.telemetry import event

SAY_WITHIN = 0.05  # the offset is logged once known this closely ...
SAY_AGAIN = 0.01  # ... and again when it moves by more than this (and its uncertainty)
OFF = 0.1  # a host this far off (beyond the uncertainty) is worth a warning


@dataclass(frozen=True)
class Offset:
    seconds: float  # this host's wall clock minus the storage service's
    error: float  # give or take


class SharedClock:
    def __init__(self, *, wall: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._wall = wall
        self._monotonic = monotonic
        # apart, so that Date headers that tick off the service's seconds (a front end caching its header)
        # cannot spoil what the write times say; the write times are used whenever there are any
        self._stamps = OffsetEstimate()
        self._dates = OffsetEstimate()
        self._lock = threading.Lock()
        self._said: Offset | None = None
        self._told_unusable = False

    def now(self) -> float:
        """Epoch seconds on the storage service's clock, as closely as this process knows it.

        This host's clock as long as it agrees with what storage said; otherwise the nearest time
        storage allows. So a host whose clock is right keeps it exactly, and one that is off is
        brought to within the estimate's uncertainty (a few milliseconds once samples accumulate)."""
        at = self._monotonic()
        own = self._wall() - at
        bounds = self._bounds(at)
        if bounds is None:
            return at + own
        return at + min(max(own, bounds[0]), bounds[1])

    def offset(self) -> Offset | None:
        """How far this host's clock is from the storage service's; None while unknown."""
        at = self._monotonic()
        bounds = self._bounds(at)
        if bounds is None:
            return None
        low, high = bounds
        return Offset(seconds=self._wall() - at - (low + high) / 2, error=(high - low) / 2)

    def _bounds(self, at: float) -> tuple[float, float] | None:
        return self._stamps.bounds(at) or self._dates.bounds(at)

    def observe(self, method: str, status: int, headers: Mapping[str, str], sent: float, received: float) -> None:
        """A storage response and when its request left and its response came (local monotonic time)."""
        date = headers.get("Date")
        second = date_seconds(date) if date else None
        stamp = write_stamp(method, status, headers)
        if second is None:
            self._unusable(date)
            if stamp is None:
                return
        with self._lock:
            if stamp is not None:
                self._verdict(self._stamps.add(Sample(sent, received, stamp, stamp + STAMP_RESOLUTION)), "write times")
            if second is not None:
                self._verdict(self._dates.add(Sample(sent, received, second, second + 1.0)), "Date headers")
            self._say()

    def _verdict(self, verdict: Verdict, source: str) -> None:
        if verdict is Verdict.RESTARTED:
            event(
                "clock",
                "Clock: storage's time, by its %s, moved against this host's (a pause of the host, a step of a clock): "
                "estimating again",
                source,
                level=logging.WARNING,
            )
            self._said = None
        elif verdict is Verdict.DISTRUSTED:
            event(
                "clock",
                "Clock: storage's %s disagree among themselves: not used for now",
                source,
                level=logging.WARNING,
            )
            self._said = None

    def _say(self) -> None:
        offset = self.offset()
        if offset is None or offset.error > SAY_WITHIN:
            return
        said = self._said
        if said is not None and abs(offset.seconds - said.seconds) <= SAY_AGAIN + offset.error:
            return
        self._said = offset
        event(
            "clock",
            "Clock: this host's clock is %+.4f s off the storage service's (±%.4f s)",
            offset.seconds,
            offset.error,
            level=logging.WARNING if abs(offset.seconds) - offset.error > OFF else logging.INFO,
            clockOffset=round(offset.seconds, 4),
            clockError=round(offset.error, 4),
        )

    def _unusable(self, date: str | None) -> None:
        if self._told_unusable:
            return
        self._told_unusable = True
        event(
            "clock",
            "Clock: a storage response had no usable Date header (%r): this host's own clock paces until storage tells the time",
            date,
            level=logging.WARNING,
        )
