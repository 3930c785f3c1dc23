"""Running a control step exactly once in effect, whatever the redeliveries of its message.

Each step's targets are recorded (each target once per run) and queued, then one transaction
marks the step done and counts the steps it emits, then those are sent. A redelivered step that
finds itself done re-sends what it emitted; a duplicate copy of a step (another message id) that
finds it done by someone else stops. A step of a stopped run completes without work."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from shared.batches.handler import batch_upgrader
from shared.domain.messages import Step
from shared.domain.runs import RunRecord
from shared.foundation.errors import GraphError, MalformedMessage, MissingPermissions, missing_permissions
from shared.services import Services
from shared.steering.gate import hold
from shared.steering.progress import advance_run
from shared.steering.stopping import fail_for_permissions
from shared.stores.target_rows import TargetRow

log = logging.getLogger(f"upgrader.{__name__}")


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


Work = Callable[[Services, RunRecord, Step, Delivery], StepOutput]


def run_step(work: Work) -> Callable[[Services, Step, Delivery], None]:
    """The control-queue handler of a step whose work is `work`."""

    def handle(services: Services, step: Step, delivery: Delivery) -> None:
        runs = services.runs
        run = runs.get_run(step.run_id)
        if run is None:
            raise MalformedMessage(f"run {step.run_id} does not exist")
        message_id, dequeue_count = delivery.message_id, delivery.dequeue_count
        done = runs.get_step(step.run_id, step.step_id)
        if done is not None:
            # our own earlier attempt died after marking the step done, or another copy did it: make
            # sure what the step recorded went out (a copy that died may have recorded targets too)
            own = done.message_id == message_id
            resend(services, step, done.children if own else [], delivery if own else None)
            return
        if dequeue_count > 1:  # an earlier attempt may have recorded targets without queueing them
            resend(services, step, [], delivery)
        output = StepOutput() if run.steering.stopped else _work(services, work, run, step, delivery)
        _finish(services, step, message_id, output)
        if run.plan is not None:  # the last discovery step done may end a step of the plan
            advance_run(services, run.run_id)

    return handle


def _work(services: Services, work: Work, run: RunRecord, step: Step, delivery: Delivery) -> StepOutput:
    try:
        return work(services, run, step, delivery)
    except MissingPermissions as missing:
        fail_for_permissions(services, run.run_id, missing.message)
    except GraphError as exc:
        missing = missing_permissions(exc, f"the {step.kind} step")
        if missing is None:
            raise
        fail_for_permissions(services, run.run_id, missing.message)
    return StepOutput()


def _finish(services: Services, step: Step, message_id: str, output: StepOutput) -> None:
    children = [(child.encode(), delay) for child, delay in output.children]
    if services.runs.complete_step(step.run_id, step.step_id, message_id, children, **output.counts) is None:
        log.info("Step %s of run %s was completed by another copy", step.step_id, step.run_id)
        resend(services, step, [])
        return
    services.dispatcher.send_steps(children)


def resend(services: Services, step: Step, children: list[tuple[str, int]], delivery: Delivery | None = None) -> list[TargetRow]:
    """Queues again what a step recorded: its targets still pending (those the gate lets go), and
    the steps it emitted.

    Targets that batches of the step's own inline work had claimed are not queued: on a
    redelivery of the step's message (`delivery`) they are taken over here, at once, since only
    this message's earlier (dead) attempts could hold them; returns the others (for the poison
    handler)."""
    rows = services.targets.pending_from(step.run_id, step.step_id)
    inline = [r for r in rows if r.state == "claimed" and (r.chain or "").startswith(inline_chains(step))]
    waiting = [r for r in rows if r not in inline]
    run = services.runs.get_run(step.run_id)
    if run is not None and run.target is not None:
        hold(services, run, waiting)  # queued if the gate lets them go (held ones are released later)
    services.dispatcher.send_steps(children)
    if delivery is None:
        return inline
    adopted = [r for r in inline if (r.chain or "").startswith(delivery.earlier(step))]
    if adopted:
        upgrader = batch_upgrader(services)
        for planned in services.dispatcher.plan(step.run_id, [r.target for r in adopted]):
            claim = delivery.chain(step)
            message = replace(planned.message, claim=claim)
            upgrader.process(run, message, claim, dequeue_count=2, adopt=delivery.earlier(step), requeue=False)
    return [r for r in inline if r not in adopted]
