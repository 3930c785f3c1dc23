"""The process the app runs in."""

from __future__ import annotations

import gc


def freeze_loaded_objects() -> None:
    """Puts every object alive now, mostly the imported libraries (the Azure SDKs, requests,
    OpenTelemetry), out of the garbage collector's reach: they live as long as the process anyway.
    Otherwise a full collection walks them all and holds every thread of the worker for 30 to
    100 ms, so the requests due meanwhile leave late and together, and Graph counts too many in
    one second (measured in the benchmark's worker processes)."""
    gc.freeze()
