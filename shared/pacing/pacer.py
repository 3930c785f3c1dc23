"""Pacing that holds across processes and instances.

Every Graph request first takes a send slot. Slots come from a schedule shared by all instances: a
row per throttling bucket in a storage table, holding the time of the next free slot. An instance
reserves a block of slots (as many as it has requests waiting) with one conditional update
(ETag), so slots never overlap, whatever the number of instances; each request then waits for its
slot. A 429 pushes the bucket's schedule past Retry-After, so every instance backs off together.

Slots are spaced 1 / (rate * HEADROOM) apart: the headroom absorbs send-time jitter, so the
arrivals at Graph stay under `rate` in any one-second window. A slot reserved for a request that
does not come passes unused, and the other instances wait behind it: callers that know how many
requests they will send next say so (`more`), and a block is never larger than that. The clock
must be one every instance shares (the storage service's, see foundation.shared_clock): an instance
whose clock is off would send its slots that far off the others', into their one-second windows.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from shared.foundation.shared_clock import Offset
from shared.foundation.telemetry import event
from shared.pacing.schedule import TableSchedule

HEADROOM = 0.95
MIN_HEADROOM = 0.85
HEADROOM_STEP = 0.02  # per 429; recovered by half a step per HEADROOM_RECOVERY without one
HEADROOM_RECOVERY = 60.0
# A request that leaves late shares a one-second window with the ones after it: 31 requests at the
# 5% headroom span 30 slots (about 52 ms more than a second at 30/s), so the lateness of one send,
# taking a slot late plus its send time, must stay well under that, or Graph counts 31 in a second.
LATE_TOLERANCE = 0.015  # a slot this far in the past is still used; older ones are dropped
WAKE_TOLERANCE = 0.03  # a caller waking this much after its slot sends in a later one
PREPARE_SECONDS = 0.03  # a caller's last-moment work (a cancel check, a token) runs this long before its slot
PREPARE_EARLY = 0.15  # ... and this long before it once more, so that slow reads are done by the last moment
MAX_LATE_PREPARES = 3  # a `prepare` that overruns its slot this many times running sends late rather than never
RESERVE_SECONDS = 0.5  # at most this much schedule is reserved at once
# a block covers at least this much of the demand this process has been sending to the bucket: one
# table write per request or two (under steady, spread-out demand) would cost more than the slots a
# demand that stops leaves unused
DEMAND_SECONDS = 0.25
REPORT_SECONDS = 30.0


@dataclass
class _Bucket:
    cond: threading.Condition = field(default_factory=threading.Condition)
    slots: list[float] = field(default_factory=list)
    waiting: int = 0
    reserving: bool = False
    reserved: int = 0
    used: int = 0
    dropped: int = 0  # reserved slots that passed unused
    blocks: int = 0  # reservations: one table write each
    overslept: int = 0  # slots given up by callers that woke too late
    headroom: float = HEADROOM  # lowered by each 429, raised again while none comes
    throttled_at: float = 0.0
    reported: float = 0.0
    taken: deque = field(default_factory=deque)  # when slots were taken in the last second: the demand
    announced: dict[int, tuple[int, float]] = field(default_factory=dict)  # caller -> (requests it will send next, when said)
    unannounced: float = 0.0  # when a caller that did not say took a slot


class Pacer:
    def __init__(
        self,
        *,
        schedule: TableSchedule,
        rate: float,
        headroom: float = HEADROOM,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        clock_offset: Callable[[], Offset | None] = lambda: None,
    ) -> None:
        self.rate = rate
        self.interval = 1.0 / (rate * headroom)
        self._schedule = schedule
        self._clock = clock
        self._sleep = sleep
        self._clock_offset = clock_offset  # how far this host's clock is from `clock`, for the report
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()
        self._max_block = max(1, int(rate * RESERVE_SECONDS))
        self._reserve_time = 0.02  # seconds a reservation takes (moving average): blocks start after it

    def _bucket(self, name: str) -> _Bucket:
        with self._lock:
            return self._buckets.setdefault(name, _Bucket())

    def acquire(
        self,
        bucket: str,
        not_before: float = 0.0,
        *,
        more: int | None = None,
        prepare: Callable[[], None] | None = None,
    ) -> float:
        """Blocks until this caller may send one request to `bucket`; returns its slot time.

        `more`: how many requests this caller will send to the bucket right after this one, each
        as soon as it has a slot (None: it does not know). `prepare`: what the caller must do
        between its slot and its request (check the run was not cancelled, take a token); it runs
        just before the slot, so a storage read or token fetch it makes delays nothing at Graph,
        and once more a little earlier, so that such a read is mostly done by the last moment.
        A caller that is too late for its slot (a busy machine, a pause of the process, a slow
        `prepare`) takes another: several late callers sending at once would crowd the next second."""
        early = not_before - self._clock() - 0.05
        if early > 0:
            self._sleep(early)
        state = self._bucket(bucket)
        caller = threading.get_ident()
        late_prepares = 0
        while True:
            with state.cond:
                self._announce(state, caller, more)
                state.waiting += 1
                try:
                    slot = self._take(bucket, state, not_before)
                finally:
                    state.waiting -= 1
            delay = slot - self._clock()
            if prepare is not None:
                if delay > PREPARE_EARLY:
                    self._sleep(delay - PREPARE_EARLY)
                    prepare()  # a storage read or token fetch it needs is made now, while there is time
                    delay = slot - self._clock()
                if delay > PREPARE_SECONDS:
                    self._sleep(delay - PREPARE_SECONDS)
                prepare()
                delay = slot - self._clock()
                if delay < -WAKE_TOLERANCE:
                    late_prepares += 1
                    if late_prepares >= MAX_LATE_PREPARES:
                        return slot
            if delay > 0:
                self._sleep(delay)
            if self._clock() - slot > WAKE_TOLERANCE:
                with state.cond:
                    state.overslept += 1
                continue
            return slot

    def _take(self, bucket: str, state: _Bucket, not_before: float) -> float:
        ours: float | None = None  # the block this caller reserved stays usable, late or not (slow storage)
        while True:
            now = self._clock()
            cutoff = now - LATE_TOLERANCE if ours is None else min(now - LATE_TOLERANCE, ours)
            stale = bisect.bisect_left(state.slots, cutoff)
            del state.slots[:stale]
            state.dropped += stale
            usable = bisect.bisect_left(state.slots, not_before)
            if usable < len(state.slots):
                state.used += 1
                state.taken.append(now)
                while state.taken[0] < now - 1.0:
                    state.taken.popleft()
                self._report(bucket, state, now)
                return state.slots.pop(usable)
            if state.reserving:
                state.cond.wait(timeout=1.0)
                continue
            # one table write per block, for the requests waiting now and the demand expected while
            # it lasts: a slot reserved for a request that does not come passes unused, and that is
            # throughput lost for good
            expected = math.ceil(len(state.taken) * DEMAND_SECONDS) if state.taken and state.taken[-1] > now - 0.1 else 0
            known = self._known_demand(state, now)
            if known is not None:  # every recent caller said what comes next: no more than that
                expected = min(expected, known)
            count = min(max(state.waiting, expected, 1), self._max_block)
            state.reserving = True
            state.cond.release()
            try:
                # an idle schedule starts the block now: by the time the reservation returns, its
                # first slots would be late, so start it when the reservation is expected back
                interval = self._interval(state, now)
                start = self._schedule.reserve(bucket, count, interval, max(now + self._reserve_time, not_before))
            finally:
                state.cond.acquire()
                state.reserving = False
                state.cond.notify_all()
            self._reserve_time = 0.8 * self._reserve_time + 0.2 * min(self._clock() - now, 1.0)
            state.slots = sorted(state.slots + [start + i * interval for i in range(count)])
            state.reserved += count
            state.blocks += 1
            ours = start

    def _announce(self, state: _Bucket, caller: int, more: int | None) -> None:
        if more is None:
            state.announced.pop(caller, None)
            state.unannounced = self._clock()
        elif more > 0:
            state.announced[caller] = (more, self._clock())
        else:
            state.announced.pop(caller, None)

    @staticmethod
    def _known_demand(state: _Bucket, now: float) -> int | None:
        """The requests announced to come besides those waiting, when every caller of the last
        second announced its own (None otherwise). An announcement older than a second is
        forgotten: its caller stopped early (a run cancelled, an error)."""
        if now - state.unannounced < 1.0:
            return None
        for caller in [c for c, (_, said) in state.announced.items() if said < now - 1.0]:
            del state.announced[caller]
        return state.waiting + sum(more for more, _ in state.announced.values())

    def _report(self, bucket: str, state: _Bucket, now: float) -> None:
        """Every half minute: how this process used the slots it reserved (dropped ones are lost
        throughput), and how far its host's clock is from the shared one."""
        if now - state.reported < REPORT_SECONDS:
            return
        if state.reported:
            offset = self._clock_offset()
            event(
                "pacing",
                "Pacing %s: %d slots reserved in %d blocks, %d used (%d overslept), %d dropped; host clock %s",
                bucket,
                state.reserved,
                state.blocks,
                state.used,
                state.overslept,
                state.dropped,
                "not timed" if offset is None else f"{offset.seconds:+.4f} s (±{offset.error:.4f} s) off storage's",
                bucket=bucket,
                reserved=state.reserved,
                blocks=state.blocks,
                used=state.used,
                overslept=state.overslept,
                dropped=state.dropped,
                clockOffset=None if offset is None else round(offset.seconds, 4),
                clockError=None if offset is None else round(offset.error, 4),
            )
        state.reported, state.reserved, state.used, state.dropped, state.blocks, state.overslept = now, 0, 0, 0, 0, 0

    def _interval(self, state: _Bucket, now: float) -> float:
        """Slot spacing for the bucket: a 429 means requests reached Graph closer together than they
        were sent (send-time jitter, on a busy host), and costs the whole bucket Retry-After, so
        each one widens the spacing a little; a minute without one narrows it back."""
        if state.headroom < HEADROOM and now - state.throttled_at > HEADROOM_RECOVERY:
            state.headroom = min(HEADROOM, state.headroom + HEADROOM_STEP / 2)
            state.throttled_at = now
        return 1.0 / (self.rate * state.headroom)

    def backoff(self, bucket: str, seconds: float) -> None:
        """Graph said Retry-After: nobody sends to this bucket for `seconds`."""
        now = self._clock()
        until = now + seconds
        self._schedule.push(bucket, until)
        state = self._bucket(bucket)
        with state.cond:
            del state.slots[: bisect.bisect_left(state.slots, until)]
            state.headroom = max(MIN_HEADROOM, state.headroom - HEADROOM_STEP)
            state.throttled_at = now

    def plan(self, bucket: str, count: int, *, speedup: float = 1.0) -> float:
        """Reserves release times for `count` future requests (queue fan-out); returns the first.

        Request i of the block is released at start + i * interval / speedup.
        """
        return self._schedule.reserve(f"plan:{bucket}", count, self.interval / speedup, self._clock())
