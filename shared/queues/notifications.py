"""The notifications queue: Graph's change notifications about installations, for the registry."""

from __future__ import annotations

import logging

import azure.functions as func

from shared.automatic.installations import process
from shared.domain.messages import Notifications
from shared.foundation.storage import NOTIFICATIONS_QUEUE, POISON_SUFFIX
from shared.foundation.telemetry import event
from shared.queues.decoding import decoded, poisoned
from shared.queues.parking import services_or_park
from shared.services import Services

NOTIFICATIONS = {Notifications: process}


def handle(msg: func.QueueMessage, services: Services | None = None) -> None:
    services = services_or_park(msg, NOTIFICATIONS_QUEUE, services)
    if services is None:
        return
    message = decoded(msg, NOTIFICATIONS)
    NOTIFICATIONS[type(message)](services, message)


def handle_poison(msg: func.QueueMessage, services: Services | None = None) -> None:
    """Installation events that could not be processed: the registry may miss installations, so the
    next automatic run scans instead of trusting it."""
    queue = NOTIFICATIONS_QUEUE + POISON_SUFFIX
    services = services_or_park(msg, queue, services)
    if services is None:
        return
    batch = poisoned(msg, NOTIFICATIONS, queue, services)
    if batch is None:
        return
    apps = {services.apps.app_of_subscription(str(item.get("subscriptionId") or "")) for item in batch.items}
    for app_id in apps - {None}:
        services.apps.invalidate_registry(app_id)
        event(
            "poisoned",
            "Installation events for app %s failed every attempt; the registry will be re-seeded",
            app_id,
            appId=app_id,
            level=logging.ERROR,
            queue=queue,
        )
