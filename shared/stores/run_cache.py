"""What a process keeps of the runs it works on: their started run rows (what the start step
resolved never changes afterwards) and their steering, trusted for a fraction of a second.

`cached_steering` is the read the hot path makes before every Graph request; the stores'
`steering` is the fresh read that decisions which must not be stale make (stopping, releasing)."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from shared.domain.runs import RunRecord
from shared.domain.steering import Steering
from shared.stores.runs import RunStore

log = logging.getLogger(f"upgrader.{__name__}")
STEERING_TTL = 0.2  # seconds a process trusts what it read of a run's steering; then it re-reads it
KEPT = 256  # runs whose rows a process keeps


class RunCache:
    def __init__(self, runs: RunStore, *, stale_ok: float, clock: Callable[[], float] = time.monotonic) -> None:
        """`stale_ok`: the oldest read of a run's steering a caller may go on with (a cancel is
        answered only after that long, so that no upgrade leaves after the answer)."""
        self._runs = runs
        self._stale_ok = stale_ok
        self._clock = clock
        self._started: OrderedDict[str, RunRecord] = OrderedDict()
        self._steering: dict[str, tuple[float, Steering]] = {}  # run id -> (read at, steering)
        self._lock = threading.Lock()
        self._refreshing = threading.Lock()

    def started_run(self, run_id: str) -> RunRecord | None:
        """The run once its target is resolved (its steering as read then: use cached_steering)."""
        with self._lock:
            run = self._started.get(run_id)
        if run is None:
            run = self._runs.get_run(run_id)
            if run is None or run.target is None:
                return run
            with self._lock:
                self._started[run_id] = run
                while len(self._started) > KEPT:
                    self._started.popitem(last=False)
        return run

    def cached_steering(self, run_id: str) -> Steering:
        """How the run is steered, as read at most `stale_ok` seconds ago by this process.

        A read older than STEERING_TTL is renewed in the background, one read per process at a
        time, while callers go on with it: they are often just before their pacing slot, and a
        storage read there would make their request leave late, crowding the next second. Only a
        read older than `stale_ok` (the process was idle) is waited for."""
        with self._lock:
            cached = self._steering.get(run_id)
        age = self._clock() - cached[0] if cached is not None else None
        if age is not None and age < STEERING_TTL:
            return cached[1]
        if age is not None and age < self._stale_ok:
            if self._refreshing.acquire(blocking=False):
                threading.Thread(target=self._refresh, args=(run_id, True), name="steering-refresh", daemon=True).start()
            return cached[1]
        self._refreshing.acquire()
        return self._refresh(run_id)

    def _refresh(self, run_id: str, background: bool = False) -> Steering | None:
        """Reads the run's steering into the cache (the caller holds `_refreshing`)."""
        try:
            with self._lock:
                cached = self._steering.get(run_id)
            now = self._clock()  # before the read: the value is at least this fresh
            if cached is not None and now - cached[0] < STEERING_TTL:
                return cached[1]  # read by the thread that held the lock before us
            steering = self._runs.steering(run_id) or Steering()
            with self._lock:
                self._steering[run_id] = (now, steering)
                while len(self._steering) > KEPT:
                    del self._steering[next(iter(self._steering))]
            return steering
        except Exception:
            if not background:
                raise
            log.warning("Reading the steering of run %s failed; the next caller reads it again", run_id, exc_info=True)
            return None
        finally:
            self._refreshing.release()
