"""A host whose wall clock is off: Python imports this module at start when its directory is on
PYTHONPATH (see devtools.funchost.worker_env), and from then on `time.time()` and `time.time_ns()`
run CLOCK_SHIFT_SECONDS ahead (behind, if negative) of the machine's clock. The monotonic clocks are
left alone, as on a host whose wall clock alone is wrong. It imports nothing from the app."""

import os
import time

_SHIFT = float(os.environ.get("CLOCK_SHIFT_SECONDS") or 0.0)

if _SHIFT:
    _time, _time_ns = time.time, time.time_ns
    _SHIFT_NS = round(_SHIFT * 1e9)
    time.time = lambda: _time() + _SHIFT
    time.time_ns = lambda: _time_ns() + _SHIFT_NS
