"""A run: what was asked, who asked, what the start step resolved, and how operators steer it
(cancel, canary pause, resume)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from shared.domain.app import TargetApp
from shared.domain.targets import Target
from shared.foundation.errors import ErrorInfo

# run errors that stop the run; after any other (discoveryIncomplete) the targets found are still processed
FATAL_ERRORS = {
    "appNotFound",
    "appAmbiguous",
    "versionNotPublished",
    "catalogError",
    "startFailed",
    "runInProgress",
    "missingPermissions",
}
EXPLICIT = "explicit"  # discovery mode of a run given its targets
TRIGGERS = ("api", "catalogWatcher", "retry")
STATES = ("queued", "discovering", "upgrading", "paused", "cancelling", "cancelled", "completed", "failed")
FINAL_STATES = ("completed", "failed", "cancelled")


@dataclass(frozen=True)
class Caller:
    """Who asked: an Entra identity (object id and name), or a description of the trigger."""

    object_id: str | None
    name: str

    def to_dict(self) -> dict:
        return {"objectId": self.object_id, "name": self.name}

    @classmethod
    def from_dict(cls, data: dict | None) -> Caller:
        data = data or {}
        return cls(data.get("objectId"), data.get("name") or "unknown")


@dataclass(frozen=True)
class Canary:
    """Decide `targets` first; then pause if more than `max_failed_percent` of them failed, or if
    `pause` asks to; otherwise go on."""

    targets: int
    max_failed_percent: float = 0.0
    pause: bool = False

    def to_dict(self) -> dict:
        return {"targets": self.targets, "maxFailedPercent": self.max_failed_percent, "pause": self.pause}

    @classmethod
    def from_dict(cls, data: dict) -> Canary:
        return cls(int(data["targets"]), float(data.get("maxFailedPercent", 0)), bool(data.get("pause", False)))

    def failed_too_many(self, decided: int, failed: int) -> bool:
        return decided > 0 and failed * 100 > self.max_failed_percent * decided


@dataclass(frozen=True, kw_only=True)
class RunSpec:
    """What POST /api/publish, the catalog watcher or a retry asked for."""

    run_id: str
    teams_app_id: str | None
    external_id: str | None
    version: str | None
    dry_run: bool
    scopes: tuple[str, ...] = ("chat",)
    targets: list[Target] | None = None  # explicit targets; None: discover
    trigger: str = "api"
    started_by: Caller = Caller(None, "api")
    retry_of: str | None = None
    canary: Canary | None = None


@dataclass(frozen=True)
class Control:
    """How operators and the canary steer a run, as its run row says now."""

    cancelled_at: str | None = None
    cancelled_by: Caller | None = None
    pause: dict | None = None  # {"reason", "decided", "failed", "at"} while paused
    phase: str = "running"  # "canary" until a canary run's first targets are decided
    error: ErrorInfo | None = None

    @property
    def stopped(self) -> bool:
        """No more upgrades: cancelled, or failed for good."""
        return self.cancelled_at is not None or (self.error is not None and self.error.code in FATAL_ERRORS)

    @property
    def holding(self) -> bool:
        """No upgrade for now: paused (and not stopped)."""
        return self.pause is not None and not self.stopped


@dataclass(frozen=True, kw_only=True)
class RunRecord:
    run_id: str
    teams_app_id: str | None
    external_id: str | None
    requested_version: str | None
    dry_run: bool
    scopes: tuple[str, ...]
    input_keys: tuple[str, ...]
    created_at: str
    target: TargetApp | None
    error: ErrorInfo | None
    discovery: dict[str, str] = field(default_factory=dict)  # scope -> scan | registry | explicit, once started
    seeding: tuple[str, ...] = ()  # scopes whose full scan seeds the installation registry
    trigger: str = "api"
    started_by: Caller = Caller(None, "api")
    retry_of: str | None = None
    canary: Canary | None = None
    control: Control = Control()

    @property
    def explicit(self) -> bool:
        return bool(self.input_keys) or self.retry_of is not None


def to_json(value) -> str:
    return json.dumps(value if isinstance(value, dict) else asdict(value), separators=(",", ":"))
