"""What operators do to a run: cancel it, resume it (a pause, or the rest of a bake), retry what it
did not upgrade.

Each answers with the run's status; a run in the wrong state is a RequestError (404 unknown run,
409 with a code saying why not)."""

from __future__ import annotations

import time
import uuid
from dataclasses import replace

from shared.domain.messages import ReleaseTargets
from shared.domain.runs import FINAL_STATES, RunSpec
from shared.domain.steering import Caller, iso
from shared.foundation.errors import RequestError
from shared.pacing.pacer import PREPARE_SECONDS, WAKE_TOLERANCE
from shared.runs.launch import launch
from shared.services import Services
from shared.steering.progress import advance_run, log_control
from shared.steering.stopping import stop

# A cancel is answered once every process has seen it: each trusts what it read of a run's
# steering for a fraction of a second (STEERING_STALE_OK, see stores.run_cache) and checks it just
# before each request, so no upgrade leaves after the answer beyond those already on the wire.
CANCEL_SEEN = 0.35  # longer than a cached read is trusted, plus the check's lead on its request
# ... trusted meanwhile this long: a request leaves at most PREPARE_SECONDS + WAKE_TOLERANCE after
# its check, and all of that must be over before a cancel is answered
STEERING_STALE_OK = round(CANCEL_SEEN - PREPARE_SECONDS - WAKE_TOLERANCE - 0.01, 3)
RETRIED = ("failed", "cancelled")


def _status(services: Services, run_id: str) -> dict:
    status = services.runs.status(run_id, failures=False)
    if status is None:
        raise RequestError("runNotFound", f"No run with id {run_id}.", status=404)
    return status


def cancel(services: Services, run_id: str, by: Caller) -> dict:
    """Cancels the run: no upgrade is sent after the answer; undecided targets end `cancelled`.
    Cancelling a run that is cancelling or cancelled answers its status again."""
    status = _status(services, run_id)
    if status["state"] in FINAL_STATES and status["cancelled"] is None:
        raise RequestError("runFinished", f"Run {run_id} is {status['state']}: there is nothing to cancel.", status=409)
    at = iso(services.now())
    cancelled = services.runs.change_steering(
        run_id, lambda s: None if s.cancelled_at else replace(s, cancelled_at=at, cancelled_by=by)
    )
    if cancelled is None:  # cancelled before: a run still cancelling gets another look at what is left
        if status["state"] == "cancelling":
            stop(services, run_id)
        return _status(services, run_id)
    run = services.runs.get_run(run_id)
    log_control("runCancelled", run, by, f"Run {run_id} cancelled by {by.name}")
    if run.target is None and cancelled.wait is not None and cancelled.wait.get("stepId"):
        # waiting for the catalog: its next look is marked done now, so nothing stays pending
        services.runs.complete_step(run_id, cancelled.wait["stepId"], "cancel", [])
    stop(services, run_id)
    time.sleep(CANCEL_SEEN)
    return _status(services, run_id)


def resume(services: Services, run_id: str, by: Caller) -> dict:
    """Goes on with a paused run, or cuts a bake short (a promote)."""
    status = _status(services, run_id)
    waiting = status.get("waiting") or {}
    if status["state"] == "waiting" and waiting.get("reason") == "window":
        opens = waiting.get("resumesAt")
        raise RequestError("outsideWindow", f"Run {run_id} waits for its maintenance window, which opens at {opens}.", status=409)
    if not (status["state"] == "paused" or (status["state"] == "waiting" and waiting.get("reason") == "bake")):
        raise RequestError("runNotPaused", f"Run {run_id} is {status['state']}, not paused.", status=409)

    def lift(steering):
        if steering.pause is not None:
            return replace(steering, pause=None)
        if steering.wait is not None and steering.wait.get("reason") == "bake":
            return replace(steering, wait=None)
        return None

    if services.runs.change_steering(run_id, lift) is not None:
        run = services.runs.get_run(run_id)
        log_control("runResumed", run, by, f"Run {run_id} resumed by {by.name}")
        if not advance_run(services, run_id):
            services.dispatcher.send_steps([(ReleaseTargets(run_id=run_id).encode(), 0)])
    return _status(services, run_id)


def retry(services: Services, run_id: str, by: Caller) -> str:
    """Starts a new run of the same app, to its newest published version, over the targets that
    ended failed or cancelled; returns its id. It follows the deployment's ROLLOUT, as any run that
    asks for no plan does."""
    status = _status(services, run_id)
    if status["state"] not in FINAL_STATES:
        raise RequestError("runNotFinished", f"Run {run_id} is {status['state']}; retry it once it is over.", status=409)
    if status.get("targetsPurgedAt"):
        message = f"Run {run_id}'s targets were deleted at {status['targetsPurgedAt']} (RUN_RETENTION); start a new run instead."
        raise RequestError("targetsPurged", message, status=409)
    targets = sorted(r.target for r in services.targets.rows_in(run_id, states=RETRIED))
    if not targets:
        raise RequestError("nothingToRetry", f"Run {run_id} has no failed or cancelled targets.", status=409)
    old = services.runs.get_run(run_id)
    spec = RunSpec(
        run_id=uuid.uuid4().hex,
        teams_app_id=old.teams_app_id,
        external_id=None if old.teams_app_id else old.external_id,
        version=None,
        dry_run=old.dry_run,
        scopes=tuple(s for s in old.scopes if any(t.scope == s for t in targets)),
        targets=targets,
        trigger="retry",
        started_by=by,
        retry_of=run_id,
    )
    launch(services, spec)
    message = f"Run {run_id} retried as run {spec.run_id} by {by.name} ({len(targets)} targets)"
    log_control("runRetried", old, by, message, newRunId=spec.run_id, targets=len(targets))
    return spec.run_id
