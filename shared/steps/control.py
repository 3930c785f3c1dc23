"""Steering a run: its canary (the first targets decided before any other is upgraded), pauses and
resumes, cancels, and failing fast when the identity lacks a Graph permission.

A stopped run (cancelled, or failed for good) sends no more upgrades: batches check before each
request, queued ones end their targets `cancelled` without a Graph call, and a sweep ends the rest.
A paused run holds: batches give their targets back and the queue drops them; a release queues
every pending target again when the run goes on.
"""

from __future__ import annotations

import logging

from shared.domain.messages import ReleaseTargets, SweepRun
from shared.domain.runs import FINAL_STATES, Caller, RunRecord
from shared.domain.targets import Outcome, Target
from shared.foundation.errors import ErrorInfo
from shared.foundation.telemetry import event, log_outcome
from shared.steps.base import log_failed
from shared.steps.holding import GATE

SWEEP = "sweep"  # the claim chain of sweeps: they decide pending targets only, never one a batch holds
SWEEP_AGAIN = 5  # seconds until a sweep looks again for targets still held by batches in flight
MAX_SWEEPS = 720  # an hour of sweeps: longer than any batch holds its targets


def fail_for_permissions(services, run_id: str, message: str) -> None:
    """Ends the run `failed` (missingPermissions): no target is tried any more. The token is
    dropped, so that the next run here asks for one with the permissions granted meanwhile."""
    services.graph.renew_token()
    error = ErrorInfo("missingPermissions", message)
    if services.runs.fail_once(run_id, error):
        log_failed(run_id, error)
        stop(services, run_id)


def stop(services, run_id: str) -> None:
    """Starts the sweep that ends a stopped run's undecided targets."""
    services.dispatcher.send_steps([(SweepRun(run_id=run_id).encode(), 0)])


def cancelled_outcome(target: Target) -> Outcome:
    return Outcome(target, "cancelled")


def sweep(services, message: SweepRun) -> None:
    """Ends the stopped run's pending targets `cancelled` (and those whose batch died holding
    them); looks again while batches in flight still hold some or steps may still add some."""
    run = services.runs.get_run(message.run_id)
    if run is None or not run.control.stopped:
        return
    rows = services.targets.rows_in(run.run_id, states=("pending", "claimed"))
    ended = {r.target: r for r in rows if r.state == "pending" or r.stale_claim}
    for outcome in services.targets.record(run.run_id, ended, [cancelled_outcome(t) for t in ended], SWEEP):
        log_outcome(run, outcome)
    status = services.runs.status(run.run_id, failures=False)
    going = status is not None and (status["counts"]["pending"] > 0 or status["state"] == "cancelling")
    if going and message.round < MAX_SWEEPS:
        services.dispatcher.send_steps([(SweepRun(run_id=run.run_id, round=message.round + 1).encode(), SWEEP_AGAIN)])


# ---- the canary -----------------------------------------------------------------------------------


def evaluate_canary(services, run: RunRecord) -> None:
    """Once every canary target is decided (and discovery can add none: it is over, or the canary
    is full): pause (failed too many, or asked to) or go on."""
    if run.canary is None or services.control(run.run_id).phase != "canary":
        return
    status = services.runs.status(run.run_id, failures=False)
    if status is None or status["state"] in FINAL_STATES:
        return
    canary = status["canary"]
    selected, decided, failed = canary["selected"], canary["decided"], canary["failed"]
    # complete: discovery is over, or every slot is taken and its target recorded
    slots = services.runs.slots(run.run_id, GATE)
    complete = status["state"] not in ("queued", "discovering") or (slots >= run.canary.targets and selected == slots)
    if selected == 0 or decided < selected or not complete:
        return
    if run.canary.failed_too_many(decided, failed):
        reason = "canaryFailed"
    elif run.canary.pause:
        reason = "canaryPassed"
    else:
        if services.runs.end_canary(run.run_id):
            log_control(
                "runResumed", run, Caller(None, "canary"), f"Run {run.run_id} passed its canary ({failed} of {decided} failed)"
            )
            services.dispatcher.send_steps([(ReleaseTargets(run_id=run.run_id).encode(), 0)])
        return
    pause = {"reason": reason, "decided": decided, "failed": failed}
    if services.runs.pause(run.run_id, pause, end_canary=True):
        log_control("runPaused", run, Caller(None, "canary"), f"Run {run.run_id} paused: {reason} ({failed} of {decided} failed)")


def log_control(name: str, run: RunRecord, by: Caller, message: str, **fields) -> None:
    """runCancelled, runPaused, runResumed, runRetried: who did what to which run."""
    event(
        name,
        "%s",
        message,
        runId=run.run_id,
        appId=run.teams_app_id,
        startedBy=by.name,
        byObjectId=by.object_id,
        level=logging.WARNING if name == "runPaused" else logging.INFO,
        **fields,
    )
