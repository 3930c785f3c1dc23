"""Timer-triggered entry points: the catalog watcher, the subscription manager, the run keeper, the queue monitor."""

from __future__ import annotations

from shared import bootstrap
from shared.automatic import watcher
from shared.automatic.retention import purge_finished_runs
from shared.automatic.subscriptions import SubscriptionManager
from shared.foundation.storage import CONTROL_QUEUE, NOTIFICATIONS_QUEUE, POISON_SUFFIX, TARGETS_QUEUE
from shared.foundation.telemetry import event
from shared.services import Services
from shared.steering.keeper import keep_runs


def check_catalog(services: Services | None = None) -> None:
    watcher.check_catalog(services or bootstrap.get())


def maintain_subscriptions(services: Services | None = None) -> None:
    SubscriptionManager(services or bootstrap.get()).maintain()


def keep_runs_going(services: Services | None = None) -> None:
    keep_runs(services or bootstrap.get())


def purge_old_runs(services: Services | None = None) -> None:
    purge_finished_runs(services or bootstrap.get())


def report_queue_depth(services: Services | None = None) -> None:
    """One queueDepth record per queue, for the workbook and the poison alert."""
    services = services or bootstrap.get()
    for name in (CONTROL_QUEUE, TARGETS_QUEUE, NOTIFICATIONS_QUEUE):
        for queue in (name, name + POISON_SUFFIX):
            depth = services.storage.queue(queue).get_queue_properties().approximate_message_count or 0
            event("queueDepth", "Queue %s holds %d messages", queue, depth, queue=queue, depth=depth)
