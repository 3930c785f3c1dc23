"""The status document of a run (GET /api/runs/{runId}) and its state, from the run row, its
counters and the time (a window may be closed)."""

from __future__ import annotations

from datetime import datetime

from shared.domain.runs import RunRecord
from shared.domain.steering import FATAL_ERRORS, HOLD, Progress, current_step, gate, iso
from shared.domain.targets import COUNTS, ID_FIELDS, OUTCOMES, Target, counter

ADMITTED = "admitted"  # counter: targets admitted to the plan's steps

# discovery counters per scope: users whose chats or joined teams were listed (or skipped: no Teams, or
# failed), teams listed, users listed as personal targets
DISCOVERY_COUNTS = {
    "chat": ("usersScanned", "usersSkipped", "usersFailed"),
    "team": ("teamsListed", "usersScanned", "usersSkipped", "usersFailed"),
    "personal": ("usersListed",),
}


def run_state(run: RunRecord, *, steps_pending: int, pending: int, now: datetime) -> str:
    """queued -> discovering -> upgrading -> completed, with paused, waiting, cancelling -> cancelled
    and failing -> failed. A final state is reached only once nothing is pending (its counts are
    final with it) and nothing can change it again."""
    steering = run.steering
    settled = steps_pending <= 0 and pending == 0
    if steering.cancelled_at is not None:
        return "cancelled" if settled else "cancelling"
    if run.error and run.error.code in FATAL_ERRORS:
        return "failed" if settled else "failing"
    if run.target is None:
        return "waiting" if steering.wait is not None else "queued"
    active = pending > 0 or steps_pending > 0
    if active and steering.pause is not None:
        return "paused"
    if active and gate(steering, run.plan, now).verdict == HOLD:
        return "waiting"
    if steps_pending > 0:
        return "discovering"
    if pending > 0:
        return "upgrading"
    return "failed" if run.error else "completed"  # a run that lost targets in discovery ends failed


def waiting_of(run: RunRecord, state: str, now: datetime) -> dict | None:
    """While the run waits for a time: why, and when it goes on by itself."""
    if state != "waiting":
        return None
    held = gate(run.steering, run.plan, now)
    return {"reason": held.reason, "resumesAt": iso(held.resumes_at) if held.resumes_at else None}


def progress_of(run: RunRecord, totals: dict[str, int], *, slots: int) -> Progress:
    """The run's figures that its steering goes by."""

    def total(name: str) -> int:
        return sum(totals.get(counter(scope, name), 0) for scope in run.scopes)

    return Progress(
        targets=sum(total(name) for name in COUNTS),
        decided=sum(total(name) for name in OUTCOMES),
        failed=total("failed"),
        admitted=totals.get(ADMITTED, 0),
        slots=slots,
        discovering=totals.get("stepsPending", 0) > 0,
    )


def _canary(run: RunRecord, totals: dict[str, int]) -> dict | None:
    """A canary plan as the canary object: selected, decided and failed are its step's."""
    if run.plan is None or not run.plan.is_canary:
        return None
    steering = run.steering
    if steering.results:
        first = steering.results[0]
        decided, failed = first["decided"], first["failed"]
    else:
        progress = progress_of(run, totals, slots=0)
        decided, failed = progress.decided, progress.failed
    phase = "canary" if steering.step == 0 and not steering.results else "running"
    return {**run.plan.canary_dict(), "selected": totals.get(ADMITTED, 0), "decided": decided, "failed": failed, "phase": phase}


def _rollout(run: RunRecord) -> dict | None:
    if run.plan is None or run.plan.is_canary:
        return None
    return {**run.plan.to_dict(), "step": current_step(run.steering)}


def overall_mode(discovery: dict[str, str]) -> str | None:
    modes = set(discovery.values())
    return None if not modes else modes.pop() if len(modes) == 1 else "mixed"


def status_document(run: RunRecord, totals: dict[str, int], failures: list[dict] | None, updated_at: str, now: datetime) -> dict:
    """GET /api/runs/{runId}: the run, its counts (in total and per scope) and discovery figures;
    without `failures` (None) for the run history."""
    by_scope = {scope: {name: totals.get(counter(scope, name), 0) for name in COUNTS} for scope in run.scopes}
    counts = {name: sum(c[name] for c in by_scope.values()) for name in COUNTS}
    state = run_state(run, steps_pending=totals.get("stepsPending", 0), pending=counts["pending"], now=now)
    steering = run.steering
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
        "canary": _canary(run, totals),
        "rollout": _rollout(run),
        "groupId": run.group_id,
        "pause": steering.pause,
        "waiting": waiting_of(run, state, now),
        "cancelled": None
        if steering.cancelled_at is None
        else {"at": steering.cancelled_at, "by": steering.cancelled_by.to_dict() if steering.cancelled_by else None},
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
