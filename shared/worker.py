"""Queue-triggered entry points: decode, dispatch, and the poison-queue safety net."""

from __future__ import annotations

import logging

import azure.functions as func

from shared import services as services_module
from shared import watcher
from shared.errors import ErrorInfo, MalformedMessage
from shared.installations import process as process_notifications
from shared.messages import LoadTargets, Notifications, RunMessage, ScanUserChats, StartRun, Step, UpgradeChats, decode
from shared.runs import Outcome
from shared.steps import StepRunner, fail_run, resend
from shared.storage import CHATS_QUEUE, CONTROL_QUEUE, NOTIFICATIONS_QUEUE, POISON_SUFFIX
from shared.subscriptions import SubscriptionManager
from shared.telemetry import event, log_chat
from shared.upgrade import BatchUpgrader

RETRIES_EXHAUSTED = "retriesExhausted"


def _decode(msg: func.QueueMessage, expected: type) -> object:
    message = decode(msg.get_body())
    if not isinstance(message, expected):
        raise MalformedMessage(f"{message.kind} does not belong on this queue")
    return message


def handle_control(msg: func.QueueMessage, services=None) -> None:
    services = services or services_module.get()
    step = _decode(msg, Step)
    StepRunner(services).handle(step, msg.id, msg.dequeue_count or 1)


def handle_chats(msg: func.QueueMessage, services=None) -> None:
    services = services or services_module.get()
    batch = _decode(msg, UpgradeChats)
    run = services.started_run(batch.run_id)
    if run is None:
        raise MalformedMessage(f"run {batch.run_id} does not exist")
    upgrader = BatchUpgrader(
        graph=services.graph,
        runs=services.runs,
        max_attempts=services.settings.max_chat_attempts,
        requeue=services.dispatcher.requeue_chats,
    )
    upgrader.process(run, batch, msg.id, msg.dequeue_count or 1)


def _poisoned(msg: func.QueueMessage, expected: type, queue: str, services):
    """The message of a poison queue, or None (logged, dropped) when it is not one of ours."""
    try:
        message = _decode(msg, expected)
        if isinstance(message, RunMessage) and services.runs.get_run(message.run_id) is None:
            raise MalformedMessage(f"unknown run {message.run_id}")
    except MalformedMessage as exc:
        body = msg.get_body()[:200].decode("utf-8", "replace")
        event(
            "poisoned",
            "Dropped an undecodable message from %s (%s): %r",
            queue,
            exc,
            body,
            queue=queue,
            level=logging.ERROR,
        )
        return None
    return message


def handle_control_poison(msg: func.QueueMessage, services=None) -> None:
    """A step that failed every attempt: account for it so that the run still completes."""
    services = services or services_module.get()
    step = _poisoned(msg, Step, CONTROL_QUEUE + POISON_SUFFIX, services)
    if step is None:
        return
    runs = services.runs
    done = runs.get_step(step.run_id, step.step_id)
    if done is not None:  # its work is recorded; only sending what it emitted failed
        resend(services, step, done.children)
        return
    counts: dict[str, int] = {}
    if isinstance(step, LoadTargets):
        # the given chats are known: record each as failed rather than lose them (nor queue them)
        chat_ids = runs.load_input(step.run_id, step.input_key)
        runs.add_targets(step.run_id, chat_ids, source=step.step_id)
        runs.pending_from(step.run_id, step.step_id)  # counts rows a dying attempt left uncounted
        _fail_chats(services, step.run_id, chat_ids, "Loading these chats failed on every attempt.")
    else:
        resend(services, step, [])  # chats it recorded before failing are targets all the same
        if isinstance(step, StartRun):
            error = ErrorInfo("startFailed", "The run could not be started: every attempt failed.")
        else:
            if isinstance(step, ScanUserChats):
                counts["usersFailed"] = len(step.user_ids)
            error = ErrorInfo(
                "discoveryIncomplete", f"Discovery step {step.step_id} failed on every attempt; some chats may be missing."
            )
        fail_run(services, step.run_id, error)
    runs.complete_step(step.run_id, step.step_id, msg.id, [], **counts)
    event(
        "poisoned",
        "Step %s of run %s was poisoned",
        step.step_id,
        step.run_id,
        runId=step.run_id,
        step=step.step_id,
        level=logging.ERROR,
        queue=CONTROL_QUEUE + POISON_SUFFIX,
    )


def handle_chats_poison(msg: func.QueueMessage, services=None) -> None:
    """A chat batch that failed every attempt: its chats without an outcome end as failed."""
    services = services or services_module.get()
    batch = _poisoned(msg, UpgradeChats, CHATS_QUEUE + POISON_SUFFIX, services)
    if batch is not None:
        event(
            "poisoned",
            "A batch of %d chats of run %s was poisoned",
            len(batch.chat_ids),
            batch.run_id,
            level=logging.ERROR,
            queue=CHATS_QUEUE + POISON_SUFFIX,
            runId=batch.run_id,
        )
        _fail_chats(services, batch.run_id, list(batch.chat_ids), "Processing failed on every attempt; the message was poisoned.")


def _fail_chats(services, run_id: str, chat_ids: list[str], message: str) -> None:
    rows = services.runs.get_chats(run_id, chat_ids)
    outcomes = []
    for chat_id, row in rows.items():
        if row.state not in ("pending", "claimed"):
            continue
        text = message + (" An upgrade request may have been sent; check the chat." if row.state == "claimed" else "")
        outcomes.append(Outcome(chat_id, "failed", failure={"status": None, "code": RETRIES_EXHAUSTED, "message": text}))
    run = services.runs.get_run(run_id)
    for outcome in services.runs.record(run_id, rows, outcomes, chain=None):
        log_chat(run, outcome)


def handle_notifications(msg: func.QueueMessage, services=None) -> None:
    services = services or services_module.get()
    process_notifications(services, _decode(msg, Notifications))


def handle_notifications_poison(msg: func.QueueMessage, services=None) -> None:
    """Installation events that could not be processed: the registry may miss chats, so the next
    automatic run scans instead of trusting it."""
    services = services or services_module.get()
    batch = _poisoned(msg, Notifications, NOTIFICATIONS_QUEUE + POISON_SUFFIX, services)
    if batch is None:
        return
    apps = {services.tracking.app_of_subscription(str(item.get("subscriptionId") or "")) for item in batch.items}
    for app_id in apps - {None}:
        services.tracking.invalidate_registry(app_id)
        event(
            "poisoned",
            "Installation events for app %s failed every attempt; the registry will be re-seeded",
            app_id,
            appId=app_id,
            level=logging.ERROR,
            queue=NOTIFICATIONS_QUEUE + POISON_SUFFIX,
        )


def check_catalog(services=None) -> None:
    watcher.check_catalog(services or services_module.get())


def maintain_subscriptions(services=None) -> None:
    SubscriptionManager(services or services_module.get()).maintain()


def report_queue_depth(services=None) -> None:
    """One queueDepth record per queue, for the workbook and the poison alert."""
    services = services or services_module.get()
    for name in (CONTROL_QUEUE, CHATS_QUEUE, NOTIFICATIONS_QUEUE):
        for queue in (name, name + POISON_SUFFIX):
            depth = services.storage.queue(queue).get_queue_properties().approximate_message_count or 0
            event("queueDepth", "Queue %s holds %d messages", queue, depth, queue=queue, depth=depth)
