"""What every control step shares: its output, recording the targets it found, failing the run."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

from shared.domain.messages import Step
from shared.domain.runs import RunRecord
from shared.domain.targets import Target
from shared.foundation.errors import ErrorInfo
from shared.foundation.telemetry import event
from shared.steps.holding import canary_candidates, give_back_slots, going_on, queue_if_going
from shared.steps.upgrade import batch_upgrader
from shared.stores.targets import TargetRow


@dataclass(frozen=True)
class Delivery:
    """Which delivery of a step's message this is: its id stays the same on every redelivery."""

    message_id: str
    dequeue_count: int

    def chain(self, step: Step) -> str:
        """The claim chain of the batches this attempt of `step` processes inline (no ":": a claim
        is "<chain>:<attempt>"); see TargetRow.open_to."""
        return f"{inline_chains(step)}{self.message_id}.{self.dequeue_count}"

    def earlier(self, step: Step) -> str:
        """The prefix of the chains of this message's earlier attempts, dead since it was redelivered."""
        return f"{inline_chains(step)}{self.message_id}."


def inline_chains(step: Step) -> str:
    return f"inline.{step.step_id}."


@dataclass
class StepOutput:
    children: list[tuple[Step, int]] = field(default_factory=list)  # (message, delay in seconds)
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n


def add_targets(services, run: RunRecord, step: Step, targets: list[Target]) -> dict[Target, str]:
    """Records targets found by a step and queues the new ones at once, so upgrades start early;
    returns the new ones (with their rows' ETags). While the run is in its canary, the first
    targets found join it and the others are held; while it is paused, all are held."""
    added: dict[Target, str] = {}
    rest = list(dict.fromkeys(targets))
    while rest:
        slots = canary_candidates(services, run, len(rest))
        if slots == 0:
            break
        chosen, rest = rest[:slots], rest[slots:]
        new = services.targets.add(step.run_id, chosen, source=step.step_id, canary=True)
        give_back_slots(services, run, slots - len(new))  # duplicates: found before
        services.dispatcher.send_targets(step.run_id, new, canary=True)
        added.update(new)
    if rest:
        new = services.targets.add(step.run_id, rest, source=step.step_id)
        if going_on(services.control(step.run_id)):
            services.dispatcher.send_targets(step.run_id, new)
        else:
            queue_if_going(services, step.run_id, new)
        added.update(new)
    return added


def resend(services, step: Step, children: list[tuple[str, int]], delivery: Delivery | None = None) -> list[TargetRow]:
    """Queues again what a step recorded: its targets still pending, and the steps it emitted.

    Targets that batches of the step's own inline work had claimed are not queued: on a
    redelivery of the step's message (`delivery`) they are taken over here, at once, since only
    this message's earlier (dead) attempts could hold them; returns the others (for the poison
    handler)."""
    rows = services.targets.pending_from(step.run_id, step.step_id)
    inline = [r for r in rows if r.state == "claimed" and (r.chain or "").startswith(inline_chains(step))]
    waiting = [r for r in rows if r not in inline]
    services.dispatcher.send_targets(step.run_id, [r.target for r in waiting if r.canary], canary=True)
    queue_if_going(services, step.run_id, [r.target for r in waiting if not r.canary])  # others may be held
    services.dispatcher.send_steps(children)
    if delivery is None:
        return inline
    adopted = [r for r in inline if (r.chain or "").startswith(delivery.earlier(step))]
    if adopted:
        run = services.runs.get_run(step.run_id)
        upgrader = batch_upgrader(services)
        for planned in services.dispatcher.plan(step.run_id, [r.target for r in adopted]):
            claim = delivery.chain(step)
            message = replace(planned.message, claim=claim)
            upgrader.process(run, message, claim, dequeue_count=2, adopt=delivery.earlier(step), requeue=False)
    return [r for r in inline if r not in adopted]


def fail_run(services, run_id: str, error: ErrorInfo) -> None:
    services.runs.fail_run(run_id, error)
    log_failed(run_id, error)


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
