"""The last resort for target batches that failed every delivery: their targets without an outcome
end `failed` (retriesExhausted), so every run completes and nothing is silently lost."""

from __future__ import annotations

import logging

from shared.domain.messages import UpgradeTargets
from shared.domain.targets import Outcome, Target
from shared.foundation.telemetry import event, log_outcome
from shared.services import Services
from shared.steering.progress import advance_run

RETRIES_EXHAUSTED = "retriesExhausted"


def poisoned_batch(services: Services, batch: UpgradeTargets, queue: str) -> None:
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
    if batch.admitted:  # these may have been the last of the plan's current step
        advance_run(services, batch.run_id)


def fail_targets(services: Services, run_id: str, targets: list[Target], message: str) -> None:
    """Ends these targets `failed` (retriesExhausted) unless they have an outcome."""
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
