"""Who called an HTTP route, for the run's `startedBy` and the control events."""

from __future__ import annotations

import azure.functions as func

from shared.domain.runs import Caller

FUNCTION_KEY = Caller(None, "function key")


def caller(req: func.HttpRequest) -> Caller:
    """The caller of a route authorised by a function key: the key names no one."""
    return FUNCTION_KEY
