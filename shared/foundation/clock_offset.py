"""How far the storage service's clock is from this process's monotonic clock, from timed requests.

A response says what time the service had when it made it (to the second, or finer); the request's
send and receive times on the local monotonic clock bracket that moment. So each sample bounds the
offset (service time - local monotonic time) to an interval, and the estimate is the interval every
sample agrees with: it narrows to about the quickest round trip once samples have fallen on both
sides of the service's second boundaries, or after one sample that carries a finer time. Old samples
are not dropped but widened by how far two clocks may drift apart since they were taken, so the
estimate stays sound in a process that sat idle.

Samples that disagree with the estimate are left out; several within a short time mean the clock
moved (a host resumed after a pause, a service clock stepped), and the estimate starts again from
them. A service whose answers keep disagreeing among themselves is not trusted for a while.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from enum import Enum

DRIFT = 50e-6  # seconds per second two clocks may drift apart, at most (a quartz oscillator's error)
TOLERANCE = 0.002  # a disagreement this small is the service's own servers differing, not a moved clock
RESTART_AFTER = 3  # this many disagreeing samples within RESTART_WINDOW: the clock moved
RESTART_WINDOW = 2.0
UNRELIABLE_AFTER = 3  # this many restarts within UNRELIABLE_WINDOW: the service's times are not to be trusted ...
UNRELIABLE_WINDOW = 60.0
DISTRUST_SECONDS = 300.0  # ... for this long


class Verdict(Enum):
    FIRST = "first"  # the first sample: a first estimate
    AGREED = "agreed"  # consistent with the estimate (and narrowed it, if it could)
    CONTRADICTED = "contradicted"  # left out: it disagrees with the estimate
    RESTARTED = "restarted"  # the clock moved: the estimate starts again from the latest samples
    DISTRUSTED = "distrusted"  # the service's times disagree among themselves: no estimate for a while
    IGNORED = "ignored"  # taken while the service's times are distrusted


@dataclass(frozen=True)
class Sample:
    sent: float  # local monotonic time the request left
    received: float  # local monotonic time its response arrived
    earliest: float  # the service's time when it answered was at or after this (epoch seconds) ...
    latest: float  # ... and before this

    @property
    def low(self) -> float:
        return self.earliest - self.received

    @property
    def high(self) -> float:
        return self.latest - self.sent


class OffsetEstimate:
    """Not thread-safe: the caller serialises `add`; `bounds` may be read from any thread."""

    def __init__(self) -> None:
        # at monotonic time t the offset lies in [low - DRIFT * t, high + DRIFT * t]; one tuple, read atomically
        self._edges: tuple[float, float] | None = None
        self._disagreed: deque[Sample] = deque()
        self._restarts: deque[float] = deque()
        self._distrusted_until = -math.inf

    def bounds(self, at: float) -> tuple[float, float] | None:
        """The interval the offset lies in at monotonic time `at`; None while there is no estimate."""
        edges = self._edges
        if edges is None:
            return None
        return edges[0] - DRIFT * at, edges[1] + DRIFT * at

    def add(self, sample: Sample) -> Verdict:
        if sample.received < self._distrusted_until:
            return Verdict.IGNORED
        bounds = self.bounds(sample.received)
        if bounds is None:
            self._edges = _edges(sample)
            return Verdict.FIRST
        low, high = bounds
        if sample.low > high + TOLERANCE or sample.high < low - TOLERANCE:
            return self._disagree(sample)
        narrowed = _intersect(self._edges, _edges(sample), sample.received)
        if narrowed is not None:  # None: it disagrees by less than TOLERANCE; it is left out
            self._edges = narrowed
        return Verdict.AGREED

    def _disagree(self, sample: Sample) -> Verdict:
        self._disagreed.append(sample)
        while self._disagreed[0].received < sample.received - RESTART_WINDOW:
            self._disagreed.popleft()
        if len(self._disagreed) < RESTART_AFTER:
            return Verdict.CONTRADICTED
        latest = sorted(self._disagreed, key=lambda s: s.received, reverse=True)
        self._disagreed.clear()
        self._restarts.append(sample.received)
        while self._restarts[0] < sample.received - UNRELIABLE_WINDOW:
            self._restarts.popleft()
        if len(self._restarts) >= UNRELIABLE_AFTER:
            self._edges, self._distrusted_until = None, sample.received + DISTRUST_SECONDS
            self._restarts.clear()
            return Verdict.DISTRUSTED
        edges = _edges(latest[0])
        for older in latest[1:]:  # the newest first: those that disagree with newer ones are left out
            edges = _intersect(edges, _edges(older), sample.received) or edges
        self._edges = edges
        return Verdict.RESTARTED


def _edges(sample: Sample) -> tuple[float, float]:
    """The sample's interval, in the form that widens with time (see OffsetEstimate._edges)."""
    return sample.low + DRIFT * sample.sent, sample.high - DRIFT * sample.sent


def _intersect(a: tuple[float, float], b: tuple[float, float], at: float) -> tuple[float, float] | None:
    low, high = max(a[0], b[0]), min(a[1], b[1])
    return (low, high) if low - DRIFT * at <= high + DRIFT * at else None
