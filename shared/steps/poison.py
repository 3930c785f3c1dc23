"""The last resort for messages that failed every delivery: account for their work, so every run
completes and nothing is silently lost."""

from __future__ import annotations

import logging

from shared.domain.messages import LoadTargets, ScanUserChats, ScanUserTeams, StartRun, Step, UpgradeTargets
from shared.domain.targets import Outcome, Target, counter
from shared.foundation.errors import ErrorInfo
from shared.foundation.telemetry import event, log_outcome
from shared.steps.base import fail_run, resend
from shared.steps.control import evaluate_canary

RETRIES_EXHAUSTED = "retriesExhausted"


def poisoned_step(services, step: Step, message_id: str, queue: str) -> None:
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


def poisoned_batch(services, batch: UpgradeTargets, queue: str) -> None:
    """A target batch that failed every attempt: its targets without an outcome end as failed."""
    event(
        "poisoned",
        "A batch of %d %s targets of run %s was poisoned",
        len(batch.ids),
        batch.scope,
        batch.run_id,
        level=logging.ERROR,
        queue=queue,
        runId=batch.run_id,
        scope=batch.scope,
    )
    targets = [Target(batch.scope, i) for i in batch.ids]
    fail_targets(services, batch.run_id, targets, "Processing failed on every attempt; the message was poisoned.")
    run = services.runs.get_run(batch.run_id)
    if run is not None and run.canary is not None:  # these may have been the canary's last
        evaluate_canary(services, run)


def fail_targets(services, run_id: str, targets: list[Target], message: str) -> None:
    rows = services.targets.get(run_id, targets)
    outcomes = []
    for target, row in rows.items():
        if row.state not in ("pending", "claimed"):
            continue
        maybe = f" An upgrade request may have been sent; check the {target.label.lower()}."
        text = message + (maybe if row.state == "claimed" else "")
        outcomes.append(Outcome(target, "failed", failure={"status": None, "code": RETRIES_EXHAUSTED, "message": text}))
    run = services.runs.get_run(run_id)
    for outcome in services.targets.record(run_id, rows, outcomes, chain=None):
        log_outcome(run, outcome)
