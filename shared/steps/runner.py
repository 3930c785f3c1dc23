"""Runs the control steps of a run: start, list users, scan users' chats and teams, list teams,
load stored targets.

Each step is idempotent under redelivery: its targets are recorded (each target once per run) and
queued, then one transaction marks the step done and counts the steps it emits, then those are
sent. A redelivered step that finds itself done re-sends what it emitted; a duplicate copy of a
step (another message id) that finds it done by someone else stops.
"""

from __future__ import annotations

import logging

from shared.domain.messages import ListTeams, ListUsers, LoadTargets, ScanUserChats, ScanUserTeams, StartRun, Step
from shared.domain.runs import RunRecord
from shared.foundation.errors import GraphError, MalformedMessage, MissingPermissions, missing_permissions
from shared.steps import discovery
from shared.steps.base import Delivery, StepOutput, resend
from shared.steps.control import evaluate_canary, fail_for_permissions
from shared.steps.layout import lay_out
from shared.steps.start import start

log = logging.getLogger(f"upgrader.{__name__}")


def load(services, run: RunRecord, step: LoadTargets, delivery: Delivery) -> StepOutput:
    lay_out(services, run, step, services.runs.load_input(step.run_id, step.input_key))
    return StepOutput()


WORK = {
    StartRun: start,
    ListUsers: discovery.list_users,
    ScanUserChats: discovery.scan_user_chats,
    ScanUserTeams: discovery.scan_user_teams,
    ListTeams: discovery.list_teams,
    LoadTargets: load,
}


class StepRunner:
    def __init__(self, services) -> None:
        self._s = services

    def handle(self, step: Step, message_id: str, dequeue_count: int) -> None:
        runs = self._s.runs
        run = runs.get_run(step.run_id)
        if run is None:
            raise MalformedMessage(f"run {step.run_id} does not exist")
        delivery = Delivery(message_id, dequeue_count)
        done = runs.get_step(step.run_id, step.step_id)
        if done is not None:
            # our own earlier attempt died after marking the step done, or another copy did it: make
            # sure what the step recorded went out (a copy that died may have recorded targets too)
            own = done.message_id == message_id
            resend(self._s, step, done.children if own else [], delivery if own else None)
            return
        if dequeue_count > 1:  # an earlier attempt may have recorded targets without queueing them
            resend(self._s, step, [], delivery)
        work = WORK.get(type(step))
        if work is None:
            raise MalformedMessage(f"unexpected step {step.kind}")
        # a stopped run (cancelled, failed for good) winds down: its remaining steps complete without work
        output = StepOutput() if run.control.stopped else self._work(work, run, step, delivery)
        self._finish(step, message_id, output)
        if run.canary is not None:  # the last discovery step done may decide the canary
            evaluate_canary(self._s, run)

    def _work(self, work, run: RunRecord, step: Step, delivery: Delivery) -> StepOutput:
        try:
            return work(self._s, run, step, delivery)
        except MissingPermissions as missing:
            fail_for_permissions(self._s, run.run_id, missing.message)
        except GraphError as exc:
            missing = missing_permissions(exc, f"the {step.kind} step")
            if missing is None:
                raise
            fail_for_permissions(self._s, run.run_id, missing.message)
        return StepOutput()

    def _finish(self, step: Step, message_id: str, output: StepOutput) -> None:
        children = [(child.encode(), delay) for child, delay in output.children]
        if self._s.runs.complete_step(step.run_id, step.step_id, message_id, children, **output.counts) is None:
            log.info("Step %s of run %s was completed by another copy", step.step_id, step.run_id)
            resend(self._s, step, [])
            return
        self._s.dispatcher.send_steps(children)
