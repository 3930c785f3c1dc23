"""A run: what was asked, who asked, what the start step resolved, its plan and its steering."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from shared.domain.app import TargetApp
from shared.domain.plan import Plan
from shared.domain.steering import Caller, Steering
from shared.domain.targets import Target
from shared.foundation.errors import ErrorInfo

EXPLICIT = "explicit"  # discovery mode of a run given its targets
TRIGGERS = ("api", "catalogWatcher", "retry")
STATES = ("queued", "waiting", "discovering", "upgrading", "paused", "cancelling", "failing", "cancelled", "completed", "failed")
FINAL_STATES = ("completed", "failed", "cancelled")


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
    started_by: Caller = field(default_factory=lambda: Caller(None, "api"))
    retry_of: str | None = None
    plan: Plan | None = None  # a rollout or a canary; None: every target at once
    group_id: str | None = None  # discover among this group's members only (a pilot ring)


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
    discovery: dict[str, str] = field(default_factory=dict)  # scope -> scan | registry | explicit, once started
    seeding: tuple[str, ...] = ()  # scopes whose full scan seeds the installation registry
    trigger: str = "api"
    started_by: Caller = field(default_factory=lambda: Caller(None, "api"))
    retry_of: str | None = None
    plan: Plan | None = None
    group_id: str | None = None
    targets_purged_at: str | None = None  # RUN_RETENTION deleted its target rows then
    steering: Steering = field(default_factory=Steering)

    @property
    def explicit(self) -> bool:
        return bool(self.input_keys) or self.retry_of is not None

    @property
    def error(self) -> ErrorInfo | None:
        return self.steering.error


def to_json(value) -> str:
    return json.dumps(value if isinstance(value, dict) else asdict(value), separators=(",", ":"))
