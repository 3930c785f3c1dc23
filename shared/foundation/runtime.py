"""The process the app runs in."""

from __future__ import annotations

import gc
import threading


def freeze_loaded_objects() -> None:
    """Puts every object alive now, mostly the imported libraries (the Azure SDKs, requests,
    OpenTelemetry), out of the garbage collector's reach: they live as long as the process anyway.
    Otherwise a full collection walks them all and holds every thread of the worker for 30 to
    100 ms, so the requests due meanwhile leave late and together, and Graph counts too many in
    one second (measured in the benchmark's worker processes)."""
    gc.freeze()


class Average:
    """A moving average that the threads of a process feed and read."""

    def __init__(self, value: float, *, cap: float) -> None:
        self.value = value
        self._cap = cap
        self._lock = threading.Lock()

    def add(self, sample: float) -> None:
        with self._lock:
            self.value = 0.8 * self.value + 0.2 * min(sample, self._cap)
