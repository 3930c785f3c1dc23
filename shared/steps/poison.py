"""The last resort for control steps that failed every delivery: account for their work, so every
run completes and nothing is silently lost."""

from __future__ import annotations

import logging

from shared.batches.poison import fail_targets
from shared.domain.messages import LoadTargets, ScanUserChats, ScanUserTeams, StartRun, Step
from shared.domain.targets import counter
from shared.foundation.errors import ErrorInfo
from shared.foundation.telemetry import event
from shared.services import Services
from shared.steering.progress import advance_run
from shared.steering.stopping import fail_run
from shared.steps.redelivery import resend


def poisoned_step(services: Services, step: Step, message_id: str, queue: str) -> None:
    """A step that failed every attempt: its targets are recorded or failed, the run is failed
    (discoveryIncomplete, or startFailed), and the step is marked done so the run can finish."""
    runs = services.runs
    done = runs.get_step(step.run_id, step.step_id)
    if done is not None:  # its work is recorded; only sending what it emitted failed
        resend(services, step, done.children)
        return
    counts: dict[str, int] = {}
    if isinstance(step, LoadTargets):
        # the given targets are known: record each as failed rather than lose them (nor queue them)
        targets = runs.load_input(step.run_id, step.input_key)
        services.targets.add(step.run_id, targets, source=step.step_id)
        services.targets.pending_from(step.run_id, step.step_id)  # counts rows a dying attempt left uncounted
        fail_targets(services, step.run_id, targets, "Loading these targets failed on every attempt.")
    else:
        # targets it recorded before failing are targets all the same; those its own inline
        # batches held when they died may have been upgraded: they end failed, saying so
        held = resend(services, step, [])
        if held:
            fail_targets(services, step.run_id, [r.target for r in held], "Its start step failed on every attempt.")
        if isinstance(step, StartRun):
            error = ErrorInfo("startFailed", "The run could not be started: every attempt failed.")
        else:
            if isinstance(step, ScanUserChats | ScanUserTeams):
                counts[counter("chat" if isinstance(step, ScanUserChats) else "team", "usersFailed")] = len(step.user_ids)
            message = f"Discovery step {step.step_id} failed on every attempt; some targets may be missing."
            error = ErrorInfo("discoveryIncomplete", message)
        fail_run(services, step.run_id, error)
    runs.complete_step(step.run_id, step.step_id, message_id, [], **counts)
    run = runs.get_run(step.run_id)
    if run is not None and run.plan is not None:  # the end of discovery may end a step of the plan
        advance_run(services, step.run_id)
    event(
        "poisoned",
        "Step %s of run %s was poisoned",
        step.step_id,
        step.run_id,
        runId=step.run_id,
        step=step.step_id,
        level=logging.ERROR,
        queue=queue,
    )
