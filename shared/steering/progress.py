"""Moving a run through its plan: after targets are decided, a discovery step is done, a bake ends
or a window opens, the run's counters are read and the plan's rules (domain.steering.advance) say
what comes next; it is stored conditionally (whoever is first moves the run, once) and carried out:
targets released, a look scheduled at a bake's end, every move logged."""

from __future__ import annotations

import logging

from shared.domain.messages import ReleaseTargets
from shared.domain.runs import FINAL_STATES, RunRecord
from shared.domain.steering import Advance, Caller, advance, parse_iso
from shared.foundation.telemetry import event
from shared.services import Services
from shared.steering.gate import send_wake, wake_at

PLAN = Caller(None, "rollout")
CANARY = Caller(None, "canary")


def advance_run(services: Services, run_id: str) -> bool:
    """Reads the run's counters and moves it on through its plan if they say so; True when that
    released targets."""
    read = services.runs.progress(run_id)
    if read is None:
        return False
    run, progress, status = read
    if run.plan is None or status["state"] in FINAL_STATES:
        return False
    now = services.now()
    moves: list[Advance] = []

    def move(steering):
        moves.append(advance(steering, run.plan, progress, now))
        return moves[-1].steering

    stored = services.runs.change_steering(run_id, move)
    if not moves:
        return False
    moved = moves[-1]
    for name, figures in moved.notes:
        _log(run, name, figures)
    if moved.wake_at is not None:
        wake_at(services, run_id, moved.wake_at, stored)
    if moved.release:
        services.dispatcher.send_steps([(ReleaseTargets(run_id=run_id).encode(), 0)])
    return moved.release


def look_again(services: Services, run_id: str) -> None:
    """An AdvanceRun message: a bake ends or a window opens now (or the wait is longer than a
    queue message can be delayed, and it is sent on again)."""
    steering = services.runs.steering(run_id)
    if steering is None or steering.stopped:
        return
    if steering.wake_at is not None and parse_iso(steering.wake_at) > services.now():
        send_wake(services, run_id, parse_iso(steering.wake_at))  # further than a message's longest delay
        return
    if not advance_run(services, run_id):  # a window opened: what it held goes now
        services.dispatcher.send_steps([(ReleaseTargets(run_id=run_id).encode(), 0)])


def _log(run: RunRecord, name: str, figures: dict) -> None:
    by = CANARY if run.plan is not None and run.plan.is_canary else PLAN
    if name == "paused":
        failed = f"{figures['failed']} of {figures['decided']} failed"
        message = f"Run {run.run_id} paused at step {figures['step'] + 1}: {figures['reason']} ({failed})"
        log_control("runPaused", run, by, message, step=figures["step"], reason=figures["reason"])
    elif name == "planDone" and by is CANARY:
        log_control("runResumed", run, by, f"Run {run.run_id} passed its canary")
    else:
        event(
            "runStep",
            "Run %s: %s %s",
            run.run_id,
            name,
            figures,
            runId=run.run_id,
            appId=run.teams_app_id,
            change=name,
            step=figures.get("step"),
            decided=figures.get("decided"),
            failed=figures.get("failed"),
            resumesAt=figures.get("resumesAt"),
        )


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
