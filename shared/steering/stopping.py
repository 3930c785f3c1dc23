"""Stopping a run: cancelled by an operator, or failed for good (a missing Graph permission, the
app not found, ...). A stopped run sends no more upgrades: batches check the gate before each
request, queued ones end their targets `cancelled` without a Graph call, and a sweep ends the rest."""

from __future__ import annotations

import logging
from dataclasses import replace

from shared.domain.messages import SweepRun
from shared.domain.steering import FATAL_ERRORS
from shared.domain.targets import Outcome, Target
from shared.foundation.errors import ErrorInfo
from shared.foundation.telemetry import event, log_outcome
from shared.services import Services

SWEEP = "sweep"  # the claim chain of sweeps: they decide pending targets only, never one a batch holds
SWEEP_AGAIN = 5  # seconds until a sweep looks again for targets still held by batches in flight
MAX_SWEEPS = 720  # an hour of sweeps: longer than any batch holds its targets


def fail_run(services: Services, run_id: str, error: ErrorInfo) -> bool:
    """Records the run's error (a fatal one stops it) unless it failed for good already; True for
    the caller that recorded it."""

    def change(steering):
        if steering.error is not None and steering.error.code in FATAL_ERRORS:
            return None
        return replace(steering, error=error, wait=None)

    if services.runs.change_steering(run_id, change) is None:
        return False
    log_failed(run_id, error)
    if error.code in FATAL_ERRORS:  # what it had found ends cancelled
        stop(services, run_id)
    return True


def fail_for_permissions(services: Services, run_id: str, message: str) -> None:
    """Ends the run `failed` (missingPermissions): no target is tried any more. The token is
    dropped, so that the next run here asks for one with the permissions granted meanwhile."""
    services.graph.renew_token()
    fail_run(services, run_id, ErrorInfo("missingPermissions", message))


def stop(services: Services, run_id: str) -> None:
    """Starts the sweep that ends a stopped run's undecided targets."""
    services.dispatcher.send_steps([(SweepRun(run_id=run_id).encode(), 0)])


def cancelled_outcome(target: Target) -> Outcome:
    return Outcome(target, "cancelled")


def sweep(services: Services, message: SweepRun) -> None:
    """Ends the stopped run's pending targets `cancelled` (and those whose batch died holding
    them); looks again while batches in flight still hold some or steps may still add some."""
    run = services.runs.get_run(message.run_id)
    if run is None or not run.steering.stopped:
        return
    rows = services.targets.rows_in(run.run_id, states=("pending", "claimed"))
    ended = {r.target: r for r in rows if r.state == "pending" or r.stale_claim}
    for outcome in services.targets.record(run.run_id, ended, [cancelled_outcome(t) for t in ended], SWEEP):
        log_outcome(run, outcome)
    status = services.runs.status(run.run_id, failures=False)
    going = status is not None and (status["counts"]["pending"] > 0 or status["state"] in ("cancelling", "failing"))
    if going and message.round < MAX_SWEEPS:
        services.dispatcher.send_steps([(SweepRun(run_id=run.run_id, round=message.round + 1).encode(), SWEEP_AGAIN)])


def log_failed(run_id: str, error: ErrorInfo) -> None:
    event(
        "runFailed",
        "Run %s failed: %s %s",
        run_id,
        error.code,
        error.message,
        runId=run_id,
        errorCode=error.code,
        level=logging.ERROR,
    )
