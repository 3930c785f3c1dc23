"""The control queue: the steps of a run (start, discovery, stored targets), and its steering's
messages (sweep a stopped run, release held targets, look at the plan again)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import azure.functions as func

from shared.domain.messages import (
    AdvanceRun,
    ListTeams,
    ListUsers,
    LoadTargets,
    Message,
    ReleaseTargets,
    ScanUserChats,
    ScanUserTeams,
    StartRun,
    Step,
    SweepRun,
)
from shared.foundation.storage import CONTROL_QUEUE, POISON_SUFFIX
from shared.foundation.telemetry import event
from shared.queues.decoding import decoded, poisoned
from shared.queues.parking import services_or_park
from shared.services import Services
from shared.steering.gate import release
from shared.steering.progress import look_again
from shared.steering.stopping import sweep
from shared.steps import discovery
from shared.steps.layout import load
from shared.steps.poison import poisoned_step
from shared.steps.redelivery import Delivery, run_step
from shared.steps.start import start

Handler = Callable[[Services, Message, Delivery], None]

CONTROL: dict[type[Message], Handler] = {
    StartRun: run_step(start),
    ListUsers: run_step(discovery.list_users),
    ScanUserChats: run_step(discovery.scan_user_chats),
    ScanUserTeams: run_step(discovery.scan_user_teams),
    ListTeams: run_step(discovery.list_teams),
    LoadTargets: run_step(load),
    SweepRun: lambda services, message, _: sweep(services, message),
    ReleaseTargets: lambda services, message, _: release(services, message.run_id),
    AdvanceRun: lambda services, message, _: look_again(services, message.run_id),
}


def handle(msg: func.QueueMessage, services: Services | None = None) -> None:
    services = services_or_park(msg, CONTROL_QUEUE, services)
    if services is None:
        return
    message = decoded(msg, CONTROL)
    CONTROL[type(message)](services, message, Delivery(msg.id, msg.dequeue_count or 1))


def handle_poison(msg: func.QueueMessage, services: Services | None = None) -> None:
    queue = CONTROL_QUEUE + POISON_SUFFIX
    services = services_or_park(msg, queue, services)
    if services is None:
        return
    message = poisoned(msg, CONTROL, queue, services)
    if isinstance(message, Step):
        poisoned_step(services, message, msg.id, queue)
    elif message is not None:  # a steering message that failed every attempt: the operator repeats it
        event(
            "poisoned",
            "%s of run %s failed every attempt; cancel or resume the run again",
            message.kind,
            message.run_id,
            runId=message.run_id,
            queue=queue,
            level=logging.ERROR,
        )
