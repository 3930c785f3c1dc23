"""The control steps of a run: start, list users, scan users' chats, load given chat ids.

Each step is idempotent under redelivery: its targets are recorded (each chat once per run) and
queued, then one transaction marks the step done and counts the steps it emits, then those are
sent. A redelivered step that finds itself done re-sends what it emitted; a duplicate copy of a
step (another message id) that finds it done by someone else stops.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from shared.catalog import resolve_target
from shared.discovery import chats_with_app, list_users_page
from shared.errors import ErrorInfo, GraphError, GraphRetryable, MalformedMessage, RunFailure
from shared.messages import ListUsers, LoadTargets, ScanUserChats, StartRun, Step
from shared.runs import FATAL_ERRORS
from shared.telemetry import event
from shared.tracking import utcnow

log = logging.getLogger(f"upgrader.{__name__}")


def resend(services, step: Step, children: list) -> None:
    """Queues again what a step recorded: its chats still pending, and the steps it emitted."""
    services.dispatcher.send_chats(step.run_id, services.runs.pending_from(step.run_id, step.step_id))
    services.dispatcher.send_steps((text, delay) for text, delay in children)


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


@dataclass
class StepOutput:
    children: list[tuple[Step, int]] = field(default_factory=list)  # (message, delay in seconds)
    counts: dict[str, int] = field(default_factory=dict)


class StepRunner:
    def __init__(self, services) -> None:
        self._s = services

    def handle(self, step: Step, message_id: str, dequeue_count: int) -> None:
        runs = self._s.runs
        run = runs.get_run(step.run_id)
        if run is None:
            raise MalformedMessage(f"run {step.run_id} does not exist")
        done = runs.get_step(step.run_id, step.step_id)
        if done is not None:
            # our own earlier attempt died after marking the step done, or another copy did it: make
            # sure what the step recorded went out (a copy that died may have recorded chats too)
            resend(self._s, step, done.children if done.message_id == message_id else [])
            return
        if dequeue_count > 1:  # an earlier attempt may have recorded targets without queueing them
            resend(self._s, step, [])
        # a run that failed for good winds down: its remaining steps complete without more work
        output = StepOutput() if run.error is not None and run.error.code in FATAL_ERRORS else self._work(run, step)
        self._finish(step, message_id, output)

    def _work(self, run, step: Step) -> StepOutput:
        if isinstance(step, StartRun):
            return self._start(run)
        if isinstance(step, ListUsers):
            return self._list_users(step)
        if isinstance(step, ScanUserChats):
            return self._scan(run, step)
        if isinstance(step, LoadTargets):
            self._target(step, self._s.runs.load_input(step.run_id, step.input_key))
            return StepOutput()
        raise MalformedMessage(f"unexpected step {step.kind}")

    def _target(self, step: Step, chat_ids: list[str], *, seed_app: str | None = None) -> None:
        """Records chats found by a step and queues the new ones at once, so upgrades start early."""
        self._s.dispatcher.send_chats(step.run_id, self._s.runs.add_targets(step.run_id, chat_ids, source=step.step_id))
        if seed_app and chat_ids:
            self._s.registry.add(seed_app, chat_ids, source="scan")

    def _finish(self, step: Step, message_id: str, output: StepOutput) -> None:
        runs = self._s.runs
        children = [(child.encode(), delay) for child, delay in output.children]
        if runs.complete_step(step.run_id, step.step_id, message_id, children, **output.counts) is None:
            log.info("Step %s of run %s was completed by another copy", step.step_id, step.run_id)
            resend(self._s, step, [])
            return
        self._s.dispatcher.send_steps(children)

    def _start(self, run) -> StepOutput:
        try:
            target = resolve_target(
                self._s.graph, teams_app_id=run.teams_app_id, external_id=run.external_id, version=run.requested_version
            )
        except RunFailure as failure:
            self._fail(run.run_id, failure.info)
            return StepOutput()
        except GraphError as exc:
            if isinstance(exc, GraphRetryable):
                raise  # the host retries the start step
            self._fail(
                run.run_id, ErrorInfo("catalogError", f"Reading the app catalog failed: {exc.status} {exc.code}: {exc.message}")
            )
            return StepOutput()
        if not run.dry_run:
            blocker = self._s.tracking.begin_run(target.teams_app_id, run.run_id, self._running)
            if blocker:
                self._fail(
                    run.run_id,
                    ErrorInfo("runInProgress", f"Run {blocker} is upgrading this app now; its status shows when it is done."),
                )
                return StepOutput()
        mode = self._discovery_mode(run, target.teams_app_id)
        self._s.runs.set_target(run.run_id, target, mode)
        if not run.explicit_chats and not run.dry_run:  # so that the catalog watcher does not start it again
            self._s.tracking.advance(target.teams_app_id, target.version, run.run_id)
        event(
            "runStarted",
            "Run %s targets %s version %s",
            run.run_id,
            target.display_name,
            target.version,
            runId=run.run_id,
            appId=target.teams_app_id,
            targetVersion=target.version,
            dryRun=run.dry_run,
            discoveryMode=mode,
        )
        if mode == "scan":
            if self._s.settings.discovery_group_id is None:  # a full scan seeds the installation registry
                self._s.tracking.begin_seed(target.teams_app_id, run.run_id)
            return StepOutput(children=[(ListUsers(run_id=run.run_id, step_id="users-0", page=0), 0)])
        keys = run.input_keys
        if mode == "registry":
            keys = self._s.runs.add_inputs(run.run_id, self._s.registry.chats(target.teams_app_id), prefix="r")
        children = [LoadTargets(run_id=run.run_id, step_id=f"input-{i}", input_key=key) for i, key in enumerate(keys)]
        return StepOutput(children=[(c, 0) for c in children])

    def _running(self, run_id: str) -> bool:
        status = self._s.runs.status(run_id)
        return status is not None and status["state"] in ("queued", "discovering", "upgrading")

    def _discovery_mode(self, run, app_id: str) -> str:
        if run.explicit_chats:
            return "chatIds"
        mode = self._s.settings.discovery_mode
        if mode == "auto":
            mode = "registry" if self._registry_ready(app_id) else "scan"
        return mode

    def _registry_ready(self, app_id: str) -> bool:
        """The registry is complete when a full scan seeded it after the subscription started, and
        nothing since (an unreadable installation id, a lost subscription) put it in doubt."""
        subscription = self._s.tracking.subscription(app_id)
        state = self._s.tracking.registry(app_id)
        if subscription is None or subscription.expires_at <= utcnow() or not state.seed_run_id or not state.seed_started_at:
            return False
        if state.seed_started_at < subscription.started_at:
            return False
        if state.invalidated_at and state.invalidated_at >= state.seed_started_at:
            return False
        seed = self._s.runs.status(state.seed_run_id)
        return seed is not None and seed["state"] in ("upgrading", "completed") and seed["error"] is None

    def _fail(self, run_id: str, error: ErrorInfo) -> None:
        fail_run(self._s, run_id, error)

    def _list_users(self, step: ListUsers) -> StepOutput:
        settings = self._s.settings
        users, cursor = list_users_page(self._s.graph, group_id=settings.discovery_group_id, cursor=step.cursor)
        size = settings.users_per_step
        children: list[tuple[Step, int]] = [
            (ScanUserChats(run_id=step.run_id, step_id=f"scan-{step.page}-{i // size}", user_ids=tuple(users[i : i + size])), 0)
            for i in range(0, len(users), size)
        ]
        if cursor:
            children.append(
                (ListUsers(run_id=step.run_id, step_id=f"users-{step.page + 1}", page=step.page + 1, cursor=cursor), 0)
            )
        return StepOutput(children=children)

    def _scan(self, run, step: ScanUserChats) -> StepOutput:
        output = StepOutput(counts={"usersScanned": 0, "usersSkipped": 0, "usersFailed": 0})
        app_id = run.target.teams_app_id
        seed = app_id if self._s.settings.discovery_group_id is None else None  # a full scan seeds the registry
        for index, user_id in enumerate(step.user_ids):
            try:
                self._target(step, chats_with_app(self._s.graph, user_id, app_id), seed_app=seed)
            except GraphRetryable as exc:
                if step.step_id.count(".") + 1 >= self._s.settings.max_chat_attempts:
                    output.counts["usersFailed"] += len(step.user_ids) - index
                    event(
                        "userSkipped",
                        "Gave up listing chats of %d users: %s",
                        len(step.user_ids) - index,
                        exc,
                        runId=step.run_id,
                        graphStatus=exc.status,
                        graphCode=exc.code,
                        level=logging.WARNING,
                    )
                    break
                rest = ScanUserChats(run_id=step.run_id, step_id=f"{step.step_id}.{index}", user_ids=step.user_ids[index:])
                output.children.append((rest, int(exc.retry_after + 0.999)))
                break
            except GraphError as exc:
                if exc.status == 404:  # not a Teams user (no license, deleted meanwhile)
                    output.counts["usersSkipped"] += 1
                else:
                    output.counts["usersFailed"] += 1
                    event(
                        "userSkipped",
                        "Listing chats of user %s failed: %s %s",
                        user_id,
                        exc.status,
                        exc.code,
                        runId=step.run_id,
                        userId=user_id,
                        graphStatus=exc.status,
                        graphCode=exc.code,
                        level=logging.WARNING,
                    )
                continue
            output.counts["usersScanned"] += 1
        return output
