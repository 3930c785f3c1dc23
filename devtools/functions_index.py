"""Loads a v2-model function app the way the Python worker does and invokes its functions.

`app.get_functions()` gives each function's raw bindings; parameters are checked against their
annotations with the converters of `azure.functions` (the checks that make the real worker reject
`func.Out[list[str]]`), and arguments and results go through the same converters.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import logging
import sys
import time
import typing
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import azure.functions as func
from azure.functions import _abc as func_abc
from azure.functions import meta

log = logging.getLogger("Host.Function")


class FunctionLoadError(RuntimeError):
    pass


class _Out(func.Out):
    def __init__(self) -> None:
        self._value = None

    def set(self, val) -> None:
        self._value = val

    def get(self):
        return self._value


class TraceContext(func_abc.TraceContext):
    """A W3C trace context for one invocation, as the host hands it to the worker."""

    def __init__(self, trace_parent: str, trace_state: str = "") -> None:
        self._parent, self._state = trace_parent, trace_state

    @property
    def trace_parent(self) -> str:
        return self._parent

    @property
    def trace_state(self) -> str:
        return self._state

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class InvocationContext(func.Context):
    """What the worker passes as `context` to a function that declares it."""

    def __init__(self, invocation_id: str, function_name: str, trace_parent: str | None = None) -> None:
        self._invocation_id, self._function_name = invocation_id, function_name
        self._trace = TraceContext(trace_parent or f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01")

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return str(Path.cwd())

    @property
    def trace_context(self) -> TraceContext:
        return self._trace

    @property
    def retry_context(self):
        return None

    @property
    def thread_local_storage(self):
        return None


@dataclass
class FunctionSpec:
    name: str
    function: typing.Callable
    trigger: dict
    inputs: list[dict] = field(default_factory=list)
    outputs: list[dict] = field(default_factory=list)  # named output bindings (func.Out parameters)
    return_binding: dict | None = None
    annotations: dict[str, object] = field(default_factory=dict)
    bindings: list[dict] = field(default_factory=list)  # as the worker reports them to the host
    takes_context: bool = False  # the function declares the worker's `context` parameter


@dataclass
class Invocation:
    ok: bool
    result: object = None  # the $return value, encoded (meta.Datum) when it has a binding
    outputs: dict[str, meta.Datum] = field(default_factory=dict)
    error: BaseException | None = None


def load_app(path: str | Path) -> tuple[object, list[FunctionSpec]]:
    path = Path(path).resolve()
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    apps = [v for v in vars(module).values() if isinstance(v, func.FunctionRegister)]
    if len(apps) != 1:
        raise FunctionLoadError(f"{path.name} must define exactly one function app, found {len(apps)}")
    return apps[0], [_spec(f) for f in apps[0].get_functions()]


def _spec(function) -> FunctionSpec:
    user_function = function.get_user_function()
    hints = typing.get_type_hints(user_function)
    bindings = [json.loads(raw) for raw in function.get_raw_bindings()]
    trigger = next(b for b in bindings if b["type"].endswith("Trigger"))
    spec = FunctionSpec(
        function.get_function_name(),
        user_function,
        trigger,
        annotations=hints,
        bindings=bindings,
        takes_context="context" in inspect.signature(user_function).parameters,
    )
    for binding in bindings:
        if binding is trigger:
            continue
        if binding["name"] == "$return":
            spec.return_binding = binding
        elif binding["direction"] == "OUT":
            spec.outputs.append(binding)
        else:
            spec.inputs.append(binding)
    _check_annotations(spec)
    return spec


def _check_annotations(spec: FunctionSpec) -> None:
    """The worker's load-time checks: every binding parameter's annotation must fit its binding."""
    registry = meta.get_binding_registry()
    params = set(inspect.signature(spec.function).parameters)
    for binding in [spec.trigger, *spec.inputs, *spec.outputs]:
        name = binding["name"]
        if name not in params:
            raise FunctionLoadError(
                f"{spec.name}: the function has no parameter named {name!r} for its {binding['type']} binding"
            )
        annotation = spec.annotations.get(name)
        converter = registry.get(binding["type"])
        if converter is None or annotation is None:
            continue
        if binding["direction"] == "OUT":
            if typing.get_origin(annotation) is not func.Out and annotation is not func.Out:
                raise FunctionLoadError(
                    f"{spec.name}: binding {name} is declared as an output, so its annotation must be func.Out[...]"
                )
            inner = typing.get_args(annotation)[0] if typing.get_args(annotation) else str
            ok = converter.check_output_type_annotation(inner)
        else:
            ok = annotation in (str, bytes) or converter.check_input_type_annotation(annotation)
        if not ok:
            raise FunctionLoadError(
                f'type of {name} binding in function.json "{binding["type"]}" does not match its Python annotation "{annotation}"'
            )
    if spec.return_binding and "return" in spec.annotations:
        converter = registry.get(spec.return_binding["type"])
        if converter and not converter.check_output_type_annotation(spec.annotations["return"]):
            raise FunctionLoadError(
                f"{spec.name}: the return annotation does not match its {spec.return_binding['type']} binding"
            )


def invoke(spec: FunctionSpec, trigger: meta.Datum, trigger_metadata: dict | None, reason: str) -> Invocation:
    """Runs one invocation and logs it as the Functions host does."""
    registry = meta.get_binding_registry()
    invocation_id = str(uuid.uuid4())
    log.info("Executing 'Functions.%s' (Reason='%s', Id=%s)", spec.name, reason, invocation_id)
    started = time.perf_counter()
    outs = {b["name"]: _Out() for b in spec.outputs}
    try:
        annotation = spec.annotations.get(spec.trigger["name"])
        if annotation in (str, bytes):
            argument = trigger.value.decode() if annotation is str and isinstance(trigger.value, bytes) else trigger.value
        else:
            argument = registry.get(spec.trigger["type"]).decode(trigger, trigger_metadata=trigger_metadata)
        context = {"context": InvocationContext(invocation_id, spec.name)} if spec.takes_context else {}
        result = spec.function(**{spec.trigger["name"]: argument}, **outs, **context)
        encoded: dict[str, meta.Datum] = {}
        for binding in spec.outputs:
            value = outs[binding["name"]].get()
            if value is not None:
                inner = typing.get_args(spec.annotations.get(binding["name"]))
                encoded[binding["name"]] = registry.get(binding["type"]).encode(value, expected_type=inner[0] if inner else None)
        if spec.return_binding and result is not None:
            result = registry.get(spec.return_binding["type"]).encode(result, expected_type=spec.annotations.get("return"))
        outcome = Invocation(True, result, encoded)
    except Exception as exc:  # the host reports the failure and applies its retry rules
        outcome = Invocation(False, error=exc)
        log.error(
            "Executed 'Functions.%s' (Failed, Id=%s, Duration=%dms)\n%s: %s",
            spec.name,
            invocation_id,
            (time.perf_counter() - started) * 1000,
            type(exc).__name__,
            exc,
            exc_info=log.isEnabledFor(logging.DEBUG),
        )
        return outcome
    log.info(
        "Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%dms)",
        spec.name,
        invocation_id,
        (time.perf_counter() - started) * 1000,
    )
    return outcome


def queue_messages(datum: meta.Datum) -> list[str]:
    """What the host writes to a queue for an output value: one message per list element."""
    if datum.type == "json":
        value = json.loads(datum.value)
        items = value if isinstance(value, list) else [value]
        return [item if isinstance(item, str) else json.dumps(item) for item in items]
    if datum.type == "bytes":
        return [datum.value.decode()]
    return [datum.value]
