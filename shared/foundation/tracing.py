"""Carries a function invocation's trace context into the app's log records and spans.

The Python worker attaches an invocation's trace context on its event loop, but runs sync functions
in a thread pool without it: records the app logs there would carry no operation id, and Application
Insights could not join a target's records to their invocation. `traced` attaches the invocation's
W3C trace context (`func.Context.trace_context`) in the thread that runs the function, for exactly
the invocation.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from opentelemetry import context as otel_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_propagator = TraceContextTextMapPropagator()


@contextmanager
def invocation_trace(trace_parent: str | None, trace_state: str | None = None) -> Iterator[None]:
    """Within the block, the current span is the invocation's (a malformed traceparent is ignored)."""
    if not trace_parent:
        yield
        return
    token = otel_context.attach(_propagator.extract({"traceparent": trace_parent, "tracestate": trace_state or ""}))
    try:
        yield
    finally:
        otel_context.detach(token)


def traced(function: Callable) -> Callable:
    """Wraps a function that takes the worker's `context` argument; its signature is unchanged."""

    @functools.wraps(function)
    def run_in_invocation_trace(*args, **kwargs):
        trace = getattr(kwargs.get("context"), "trace_context", None)
        with invocation_trace(getattr(trace, "trace_parent", None), getattr(trace, "trace_state", None)):
            return function(*args, **kwargs)

    return run_in_invocation_trace
