"""Queue-triggered entry points: decode, hand to the step, and the poison-queue safety net."""

from __future__ import annotations

import logging

import azure.functions as func

from shared import bootstrap
from shared.automatic.installations import process as process_notifications
from shared.domain.messages import Notifications, ReleaseTargets, RunMessage, Step, SweepRun, UpgradeTargets, decode
from shared.foundation.errors import MalformedMessage
from shared.foundation.storage import CONTROL_QUEUE, NOTIFICATIONS_QUEUE, POISON_SUFFIX, TARGETS_QUEUE
from shared.foundation.telemetry import event
from shared.steps.batch import upgrade_batch
from shared.steps.control import sweep
from shared.steps.holding import release
from shared.steps.poison import poisoned_batch, poisoned_step
from shared.steps.runner import StepRunner

CONTROL_MESSAGES = (Step, SweepRun, ReleaseTargets)


def _decode(msg: func.QueueMessage, expected: type | tuple[type, ...]) -> object:
    message = decode(msg.get_body())
    if not isinstance(message, expected):
        raise MalformedMessage(f"{message.kind} does not belong on this queue")
    return message


def handle_control(msg: func.QueueMessage, services=None) -> None:
    services = services or bootstrap.get()
    message = _decode(msg, CONTROL_MESSAGES)
    if isinstance(message, SweepRun):
        sweep(services, message)
    elif isinstance(message, ReleaseTargets):
        release(services, message)
    else:
        StepRunner(services).handle(message, msg.id, msg.dequeue_count or 1)


def handle_targets(msg: func.QueueMessage, services=None) -> None:
    services = services or bootstrap.get()
    upgrade_batch(services, _decode(msg, UpgradeTargets), msg.id, msg.dequeue_count or 1)


def handle_notifications(msg: func.QueueMessage, services=None) -> None:
    services = services or bootstrap.get()
    process_notifications(services, _decode(msg, Notifications))


def _poisoned(msg: func.QueueMessage, expected: type | tuple[type, ...], queue: str, services):
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
    services = services or bootstrap.get()
    queue = CONTROL_QUEUE + POISON_SUFFIX
    message = _poisoned(msg, CONTROL_MESSAGES, queue, services)
    if isinstance(message, Step):
        poisoned_step(services, message, msg.id, queue)
    elif message is not None:  # a sweep or release that failed every attempt: the operator repeats it
        event(
            "poisoned",
            "%s of run %s failed every attempt; cancel or resume the run again",
            message.kind,
            message.run_id,
            runId=message.run_id,
            queue=queue,
            level=logging.ERROR,
        )


def handle_targets_poison(msg: func.QueueMessage, services=None) -> None:
    services = services or bootstrap.get()
    queue = TARGETS_QUEUE + POISON_SUFFIX
    batch = _poisoned(msg, UpgradeTargets, queue, services)
    if batch is not None:
        poisoned_batch(services, batch, queue)


def handle_notifications_poison(msg: func.QueueMessage, services=None) -> None:
    """Installation events that could not be processed: the registry may miss installations, so the
    next automatic run scans instead of trusting it."""
    services = services or bootstrap.get()
    queue = NOTIFICATIONS_QUEUE + POISON_SUFFIX
    batch = _poisoned(msg, Notifications, queue, services)
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
            queue=queue,
        )
