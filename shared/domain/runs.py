"""A run: what was asked, what the start step resolved, and the status document built from its counters."""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.domain.app import TargetApp
from shared.domain.targets import COUNTS, ID_FIELDS, Target, counter
from shared.foundation.errors import ErrorInfo

# run errors that stop the run; after any other (discoveryIncomplete) the targets found are still processed
FATAL_ERRORS = {"appNotFound", "appAmbiguous", "versionNotPublished", "catalogError", "startFailed", "runInProgress"}
# discovery counters per scope: users whose chats or joined teams were listed (or skipped: no Teams, or
# failed), teams listed, users listed as personal targets
DISCOVERY_COUNTS = {
    "chat": ("usersScanned", "usersSkipped", "usersFailed"),
    "team": ("teamsListed", "usersScanned", "usersSkipped", "usersFailed"),
    "personal": ("usersListed",),
}
EXPLICIT = "explicit"  # discovery mode of a run given its targets


@dataclass(frozen=True, kw_only=True)
class RunSpec:
    """What POST /api/publish (or the catalog watcher) asked for."""

    run_id: str
    teams_app_id: str | None
    external_id: str | None
    version: str | None
    dry_run: bool
    scopes: tuple[str, ...] = ("chat",)
    targets: list[Target] | None = None  # explicit targets; None: discover


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

    @property
    def explicit(self) -> bool:
        return bool(self.input_keys)


def run_state(*, started: bool, error: ErrorInfo | None, steps_pending: int, pending: int) -> str:
    if not started:
        return "queued"
    if error and error.code in FATAL_ERRORS:
        return "failed"
    if steps_pending > 0:
        return "discovering"
    if pending > 0:
        return "upgrading"
    return "failed" if error else "completed"  # a run that lost targets in discovery ends failed


def overall_mode(discovery: dict[str, str]) -> str | None:
    modes = set(discovery.values())
    return None if not modes else modes.pop() if len(modes) == 1 else "mixed"


def status_document(run: RunRecord, totals: dict[str, int], failures: list[dict], updated_at: str) -> dict:
    """GET /api/runs/{runId}: the run, its counts (in total and per scope) and discovery figures."""
    by_scope = {scope: {name: totals.get(counter(scope, name), 0) for name in COUNTS} for scope in run.scopes}
    counts = {name: sum(c[name] for c in by_scope.values()) for name in COUNTS}
    state = run_state(
        started=run.target is not None or run.error is not None,
        error=run.error,
        steps_pending=totals.get("stepsPending", 0),
        pending=counts["pending"],
    )
    discovery: dict = {"mode": overall_mode(run.discovery), "usersScanned": 0, "usersSkipped": 0, "usersFailed": 0}
    discovery["scopes"] = {}
    for scope in run.scopes:
        figures = {name: totals.get(counter(scope, name), 0) for name in DISCOVERY_COUNTS[scope]}
        for name in ("usersScanned", "usersSkipped", "usersFailed"):
            discovery[name] += figures.get(name, 0)
        discovery["scopes"][scope] = {"mode": run.discovery.get(scope), **figures}
    return {
        "runId": run.run_id,
        "teamsAppId": run.teams_app_id,
        "targetVersion": run.target.version if run.target else run.requested_version,
        "dryRun": run.dry_run,
        "scopes": list(run.scopes),
        "state": state,
        "counts": {"targets": sum(counts.values()), **counts},
        "countsByScope": {scope: {"targets": sum(c.values()), **c} for scope, c in by_scope.items()},
        "failures": failures,
        "error": run.error.to_dict() if run.error else None,
        "createdAt": run.created_at,
        "updatedAt": updated_at,
        "discovery": discovery,
    }


def failure_entry(target: Target, status: int | None, code: str, message: str) -> dict:
    """One entry of a run's `failures`: the scope, the resource under its API name, Graph's answer."""
    return {"scope": target.scope, ID_FIELDS[target.scope]: target.id, "status": status, "code": code, "message": message}
