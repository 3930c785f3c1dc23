"""The status document of a run (GET /api/runs/{runId}) and its state, from the run row and its
counters."""

from __future__ import annotations

from shared.domain.runs import FATAL_ERRORS, RunRecord
from shared.domain.targets import COUNTS, ID_FIELDS, Target, counter

# discovery counters per scope: users whose chats or joined teams were listed (or skipped: no Teams, or
# failed), teams listed, users listed as personal targets
DISCOVERY_COUNTS = {
    "chat": ("usersScanned", "usersSkipped", "usersFailed"),
    "team": ("teamsListed", "usersScanned", "usersSkipped", "usersFailed"),
    "personal": ("usersListed",),
}


def run_state(run: RunRecord, *, steps_pending: int, pending: int) -> str:
    """queued -> discovering -> upgrading -> completed, with paused, cancelling -> cancelled and failed."""
    control = run.control
    if run.target is None and run.error is None and control.cancelled_at is None:
        return "queued"
    if control.cancelled_at is not None:
        return "cancelled" if steps_pending <= 0 and pending == 0 else "cancelling"
    if run.error and run.error.code in FATAL_ERRORS:
        return "failed"
    if control.pause is not None and (pending > 0 or steps_pending > 0):
        return "paused"
    if steps_pending > 0:
        return "discovering"
    if pending > 0:
        return "upgrading"
    return "failed" if run.error else "completed"  # a run that lost targets in discovery ends failed


def overall_mode(discovery: dict[str, str]) -> str | None:
    modes = set(discovery.values())
    return None if not modes else modes.pop() if len(modes) == 1 else "mixed"


def status_document(run: RunRecord, totals: dict[str, int], failures: list[dict] | None, updated_at: str) -> dict:
    """GET /api/runs/{runId}: the run, its counts (in total and per scope) and discovery figures;
    without `failures` (None) for the run history."""
    by_scope = {scope: {name: totals.get(counter(scope, name), 0) for name in COUNTS} for scope in run.scopes}
    counts = {name: sum(c[name] for c in by_scope.values()) for name in COUNTS}
    state = run_state(run, steps_pending=totals.get("stepsPending", 0), pending=counts["pending"])
    discovery: dict = {"mode": overall_mode(run.discovery), "usersScanned": 0, "usersSkipped": 0, "usersFailed": 0}
    discovery["scopes"] = {}
    for scope in run.scopes:
        figures = {name: totals.get(counter(scope, name), 0) for name in DISCOVERY_COUNTS[scope]}
        for name in ("usersScanned", "usersSkipped", "usersFailed"):
            discovery[name] += figures.get(name, 0)
        discovery["scopes"][scope] = {"mode": run.discovery.get(scope), **figures}
    document = {
        "runId": run.run_id,
        "teamsAppId": run.teams_app_id,
        "targetVersion": run.target.version if run.target else run.requested_version,
        "dryRun": run.dry_run,
        "scopes": list(run.scopes),
        "state": state,
        "trigger": run.trigger,
        "startedBy": run.started_by.to_dict(),
        "retryOf": run.retry_of,
        "canary": None
        if run.canary is None
        else {
            **run.canary.to_dict(),
            "selected": totals.get("canaryAssigned", 0),
            "decided": totals.get("canaryDecided", 0),
            "failed": totals.get("canaryFailed", 0),
            "phase": run.control.phase,
        },
        "pause": run.control.pause,
        "cancelled": None
        if run.control.cancelled_at is None
        else {"at": run.control.cancelled_at, "by": run.control.cancelled_by.to_dict() if run.control.cancelled_by else None},
        "counts": {"targets": sum(counts.values()), **counts},
        "countsByScope": {scope: {"targets": sum(c.values()), **c} for scope, c in by_scope.items()},
        "error": run.error.to_dict() if run.error else None,
        "createdAt": run.created_at,
        "updatedAt": updated_at,
        "discovery": discovery,
    }
    if failures is not None:
        document["failures"] = failures
    return document


def failure_entry(target: Target, status: int | None, code: str, message: str) -> dict:
    """One entry of a run's `failures`: the scope, the resource under its API name, Graph's answer."""
    return {"scope": target.scope, ID_FIELDS[target.scope]: target.id, "status": status, "code": code, "message": message}
