"""Timer-triggered entry points: the catalog watcher, the subscription manager, the queue monitor."""

from __future__ import annotations

from shared import bootstrap
from shared.automatic import watcher
from shared.automatic.subscriptions import SubscriptionManager
from shared.foundation.storage import CONTROL_QUEUE, NOTIFICATIONS_QUEUE, POISON_SUFFIX, TARGETS_QUEUE
from shared.foundation.telemetry import event


def check_catalog(services=None) -> None:
    watcher.check_catalog(services or bootstrap.get())


def maintain_subscriptions(services=None) -> None:
    SubscriptionManager(services or bootstrap.get()).maintain()


def report_queue_depth(services=None) -> None:
    """One queueDepth record per queue, for the workbook and the poison alert."""
    services = services or bootstrap.get()
    for name in (CONTROL_QUEUE, TARGETS_QUEUE, NOTIFICATIONS_QUEUE):
        for queue in (name, name + POISON_SUFFIX):
            depth = services.storage.queue(queue).get_queue_properties().approximate_message_count or 0
            event("queueDepth", "Queue %s holds %d messages", queue, depth, queue=queue, depth=depth)
