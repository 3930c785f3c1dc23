"""Queue messages, as dataclasses with a JSON form: {"kind": ..., camelCase fields}.

The control queue carries the steps of a run (start, discovery, explicit targets); the targets
queue carries batches of targets of one scope to check and upgrade. Every message stays far below
the 48 KiB that a base64-encoded queue message can hold.
"""

from __future__ import annotations

import json
import re
from dataclasses import MISSING, dataclass, fields
from typing import ClassVar, Union, get_args, get_origin, get_type_hints

from shared.foundation.errors import MalformedMessage
from shared.foundation.settings import SCOPES

MAX_MESSAGE_BYTES = 48 * 1024
RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


@dataclass(frozen=True, kw_only=True)
class Message:
    kind: ClassVar[str] = ""

    def encode(self) -> str:
        body = {"kind": self.kind}
        for f in fields(self):
            value = getattr(self, f.name)
            body[_camel(f.name)] = list(value) if isinstance(value, tuple) else value
        text = json.dumps(body, separators=(",", ":"))
        if len(text.encode()) > MAX_MESSAGE_BYTES:
            raise ValueError(f"{self.kind} message is {len(text)} bytes, over the {MAX_MESSAGE_BYTES} byte limit")
        return text


@dataclass(frozen=True, kw_only=True)
class RunMessage(Message):
    run_id: str


@dataclass(frozen=True, kw_only=True)
class Step(RunMessage):
    """A control-queue message. `step_id` is unique within the run and the same on every redelivery."""

    step_id: str


@dataclass(frozen=True, kw_only=True)
class StartRun(Step):
    kind: ClassVar[str] = "start"
    step_id: str = "start"


@dataclass(frozen=True, kw_only=True)
class ListUsers(Step):
    """One page of users (or of the discovery group's transitive members): the users are personal
    targets, and their chats and joined teams are scanned, as the run's scopes ask."""

    kind: ClassVar[str] = "listUsers"
    page: int
    cursor: str | None = None


@dataclass(frozen=True, kw_only=True)
class ScanUserChats(Step):
    """The chats of a few users where the app is installed."""

    kind: ClassVar[str] = "scanUserChats"
    user_ids: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class ScanUserTeams(Step):
    """The teams a few users have joined (team discovery within the discovery group)."""

    kind: ClassVar[str] = "scanUserTeams"
    user_ids: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class ListTeams(Step):
    """One page of the tenant's teams."""

    kind: ClassVar[str] = "listTeams"
    page: int
    cursor: str | None = None


@dataclass(frozen=True, kw_only=True)
class LoadTargets(Step):
    """A chunk of targets stored with the run: the ids given to POST /api/publish, or the registry's."""

    kind: ClassVar[str] = "loadTargets"
    input_key: str


@dataclass(frozen=True, kw_only=True)
class UpgradeTargets(RunMessage):
    """A batch of targets of one scope to check and upgrade.

    `attempt` counts reschedules after throttling; `claim` is the id of the first message of the
    batch, so a rescheduled batch may take over the targets that it claimed itself. `etags`, when
    given, are those of the targets' rows as they were queued (a stale one costs a read later).
    """

    kind: ClassVar[str] = "upgradeTargets"
    scope: str
    ids: tuple[str, ...]
    attempt: int = 0
    claim: str | None = None
    etags: tuple[str, ...] = ()  # of the targets' rows when queued: spares a read per target
    admitted: bool = False  # targets admitted to the current step of the run's plan


@dataclass(frozen=True, kw_only=True)
class SweepRun(RunMessage):
    """A stopped run (cancelled, or failed for good): its undecided targets end cancelled."""

    kind: ClassVar[str] = "sweepRun"
    round: int = 0


@dataclass(frozen=True, kw_only=True)
class ReleaseTargets(RunMessage):
    """Targets held back are queued: a run resumed or waited enough, or a step of its plan admits more."""

    kind: ClassVar[str] = "releaseTargets"


@dataclass(frozen=True, kw_only=True)
class AdvanceRun(RunMessage):
    """Look at the run's plan again at this time: a bake ends, a window opens."""

    kind: ClassVar[str] = "advanceRun"


@dataclass(frozen=True, kw_only=True)
class Notifications(Message):
    """Change notifications from Graph that passed the clientState check, as received."""

    kind: ClassVar[str] = "notifications"
    items: list[dict]


KINDS: dict[str, type[Message]] = {
    cls.kind: cls
    for cls in (
        StartRun,
        ListUsers,
        ScanUserChats,
        ScanUserTeams,
        ListTeams,
        LoadTargets,
        UpgradeTargets,
        SweepRun,
        ReleaseTargets,
        AdvanceRun,
        Notifications,
    )
}


def _check(value: object, annotation: object, where: str) -> object:
    origin = get_origin(annotation)
    if origin is Union:
        options = get_args(annotation)
        if value is None and type(None) in options:
            return None
        return _check(value, next(o for o in options if o is not type(None)), where)
    if origin is tuple:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise MalformedMessage(f"{where} must be a list of strings")
        return tuple(value)
    if origin is list:
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise MalformedMessage(f"{where} must be a list of objects")
        return value
    if annotation is bool and not isinstance(value, bool):
        raise MalformedMessage(f"{where} must be true or false")
    if annotation is int and (not isinstance(value, int) or isinstance(value, bool)):
        raise MalformedMessage(f"{where} must be an integer")
    if annotation is str and not isinstance(value, str):
        raise MalformedMessage(f"{where} must be a string")
    return value


def decode(text: str | bytes) -> Message:
    try:
        body = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedMessage(f"not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise MalformedMessage("not a JSON object")
    cls = KINDS.get(body.get("kind"))  # type: ignore[arg-type]
    if cls is None:
        raise MalformedMessage(f"unknown kind {body.get('kind')!r}")
    hints = get_type_hints(cls)
    values = {}
    for f in fields(cls):
        key = _camel(f.name)
        if key in body:
            values[f.name] = _check(body[key], hints[f.name], f"{cls.kind}.{key}")
        elif f.default is MISSING:
            raise MalformedMessage(f"{cls.kind} lacks {key}")
    if "run_id" in values and not RUN_ID.match(values["run_id"]):
        raise MalformedMessage(f"{cls.kind}.runId is not a run id")
    if "scope" in values and values["scope"] not in SCOPES:
        raise MalformedMessage(f"{cls.kind}.scope is not one of {', '.join(SCOPES)}")
    return cls(**values)
