"""What operators do to a run: cancel it, resume it when paused, retry what it did not upgrade.

Each answers with the run's status; a run in the wrong state is a RequestError (404 unknown run,
409 with a code saying why not).
"""

from __future__ import annotations

import time
import uuid

from shared.domain.messages import ReleaseTargets, StartRun
from shared.domain.runs import FINAL_STATES, Caller, RunSpec
from shared.foundation.errors import RequestError
from shared.foundation.telemetry import event
from shared.steps.control import log_control, stop

# A cancel is answered once every process has seen it: each trusts what it read of a run's
# control state for a fraction of a second (bootstrap.CONTROL_STALE_OK) and checks it just before
# each request, so no upgrade leaves after the answer beyond those already on the wire.
CANCEL_SEEN = 0.35  # longer than a cached control row is trusted, plus the check's lead on its request
RETRIED = ("failed", "cancelled")


def _status(services, run_id: str) -> dict:
    status = services.runs.status(run_id, failures=False)
    if status is None:
        raise RequestError("runNotFound", f"No run with id {run_id}.", status=404)
    return status


def cancel(services, run_id: str, by: Caller) -> dict:
    """Cancels the run: no upgrade is sent after the answer; undecided targets end `cancelled`.
    Cancelling a run that is cancelling or cancelled answers its status again."""
    status = _status(services, run_id)
    if status["state"] in FINAL_STATES and status["cancelled"] is None:
        raise RequestError("runFinished", f"Run {run_id} is {status['state']}: there is nothing to cancel.", status=409)
    if services.runs.cancel(run_id, by):
        run = services.runs.get_run(run_id)
        log_control("runCancelled", run, by, f"Run {run_id} cancelled by {by.name}")
        stop(services, run_id)
        time.sleep(CANCEL_SEEN)
    return _status(services, run_id)


def resume(services, run_id: str, by: Caller) -> dict:
    status = _status(services, run_id)
    if status["state"] != "paused":
        raise RequestError("runNotPaused", f"Run {run_id} is {status['state']}, not paused.", status=409)
    if services.runs.resume(run_id, by):
        run = services.runs.get_run(run_id)
        log_control("runResumed", run, by, f"Run {run_id} resumed by {by.name}")
        services.dispatcher.send_steps([(ReleaseTargets(run_id=run_id).encode(), 0)])
    return _status(services, run_id)


def retry(services, run_id: str, by: Caller) -> str:
    """Starts a new run of the same app, to its newest published version, over the targets that
    ended failed or cancelled; returns its id."""
    status = _status(services, run_id)
    if status["state"] not in FINAL_STATES:
        raise RequestError("runNotFinished", f"Run {run_id} is {status['state']}; retry it once it is over.", status=409)
    targets = sorted(r.target for r in services.targets.rows_in(run_id, states=RETRIED))
    if not targets:
        raise RequestError("nothingToRetry", f"Run {run_id} has no failed or cancelled targets.", status=409)
    old = services.runs.get_run(run_id)
    new_id = uuid.uuid4().hex
    spec = RunSpec(
        run_id=new_id,
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
    services.runs.create_run(spec)
    services.dispatcher.send_steps([(StartRun(run_id=new_id).encode(), 0)])
    message = f"Run {run_id} retried as run {new_id} by {by.name} ({len(targets)} targets)"
    log_control("runRetried", old, by, message, newRunId=new_id, targets=len(targets))
    event(
        "runQueued",
        "Run %s queued for app %s: a retry of run %s",
        new_id,
        old.teams_app_id,
        run_id,
        runId=new_id,
        appId=old.teams_app_id,
        trigger="retry",
        startedBy=by.name,
        retryOf=run_id,
        scopes=",".join(spec.scopes),
        targets=len(targets),
    )
    return new_id
