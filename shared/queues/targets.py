"""The targets queue: batches of targets to check and upgrade."""

from __future__ import annotations

import azure.functions as func

from shared.batches.handler import upgrade_batch
from shared.batches.poison import poisoned_batch
from shared.domain.messages import UpgradeTargets
from shared.foundation.storage import POISON_SUFFIX, TARGETS_QUEUE
from shared.queues.decoding import decoded, poisoned
from shared.queues.parking import services_or_park
from shared.services import Services

TARGETS = {UpgradeTargets: upgrade_batch}


def handle(msg: func.QueueMessage, services: Services | None = None) -> None:
    services = services_or_park(msg, TARGETS_QUEUE, services)
    if services is None:
        return
    message = decoded(msg, TARGETS)
    TARGETS[type(message)](services, message, msg.id, msg.dequeue_count or 1)


def handle_poison(msg: func.QueueMessage, services: Services | None = None) -> None:
    queue = TARGETS_QUEUE + POISON_SUFFIX
    services = services_or_park(msg, queue, services)
    if services is None:
        return
    batch = poisoned(msg, TARGETS, queue, services)
    if batch is not None:
        poisoned_batch(services, batch, queue)
