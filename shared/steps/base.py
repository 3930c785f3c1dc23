"""What every control step shares: its output, recording the targets it found, failing the run."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from shared.domain.messages import Step
from shared.domain.targets import Target
from shared.foundation.errors import ErrorInfo
from shared.foundation.telemetry import event


@dataclass
class StepOutput:
    children: list[tuple[Step, int]] = field(default_factory=list)  # (message, delay in seconds)
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n


def add_targets(services, step: Step, targets: list[Target]) -> dict[Target, str]:
    """Records targets found by a step and queues the new ones at once, so upgrades start early;
    returns the new ones (with their rows' ETags)."""
    added = services.targets.add(step.run_id, targets, source=step.step_id)
    services.dispatcher.send_targets(step.run_id, added)
    return added


def resend(services, step: Step, children: list[tuple[str, int]]) -> None:
    """Queues again what a step recorded: its targets still pending, and the steps it emitted."""
    services.dispatcher.send_targets(step.run_id, services.targets.pending_from(step.run_id, step.step_id))
    services.dispatcher.send_steps(children)


def fail_run(services, run_id: str, error: ErrorInfo) -> None:
    services.runs.fail_run(run_id, error)
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
