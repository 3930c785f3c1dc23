"""Processing the notifications queued by POST /api/notifications: for a chat installation created
or deleted, the registry records whether the app is installed in that chat now (one GET, so that
out-of-order or repeated notifications do no harm); lifecycle events reauthorize or recreate the
subscription."""

from __future__ import annotations

import logging
import re

from shared.errors import GraphError, GraphRetryable
from shared.messages import Notifications
from shared.registry import decode_installation_id
from shared.subscriptions import SubscriptionManager
from shared.telemetry import event
from shared.upgrade import get_installation

RESOURCE = re.compile(r"appCatalogs/teamsApps\('([^']+)'\)/installations\('([^']+)'\)", re.IGNORECASE)


def process(services, batch: Notifications) -> None:
    tracking, registry = services.tracking, services.registry
    for item in batch.items:
        subscription_id = str(item.get("subscriptionId") or "")
        app_id = tracking.app_of_subscription(subscription_id)
        if app_id is None:
            event(
                "registry",
                "Notification for unknown subscription %s ignored",
                subscription_id,
                subscriptionId=subscription_id,
                level=logging.WARNING,
                change="unknownSubscription",
            )
            continue
        lifecycle_event = item.get("lifecycleEvent")
        if lifecycle_event:
            _lifecycle(services, app_id, subscription_id, str(lifecycle_event))
            continue
        change = item.get("changeType")
        match = RESOURCE.search(str(item.get("resource") or ""))
        installation_id = (item.get("resourceData") or {}).get("id") or (match.group(2) if match else None)
        decoded = decode_installation_id(installation_id) if isinstance(installation_id, str) else None
        if change not in ("created", "deleted"):
            event("registry", "Ignored a %r notification for app %s", change, app_id, appId=app_id, change="ignored")
            continue
        if decoded is None or decoded[1].lower() != app_id.lower():
            # we cannot tell which chat it is: the registry is no longer complete; the next auto run scans
            tracking.invalidate_registry(app_id, undecodable=1)
            event(
                "registry",
                "Installation %s of app %s could not be read; the registry will be re-seeded by a scan",
                installation_id,
                app_id,
                appId=app_id,
                installationId=installation_id,
                level=logging.WARNING,
                change="undecodable",
            )
            continue
        chat_id = decoded[0]
        # Notifications may arrive out of order or twice, and carry no time: take them as a hint
        # and record what Graph says now.
        if _installed(services, chat_id, app_id):
            registry.add(app_id, [chat_id], source="notification")
        else:
            registry.remove(app_id, chat_id)
        tracking.count_events(app_id, 1)
        event("registry", "Registry: app %s %s in chat %s", app_id, change, chat_id, appId=app_id, chatId=chat_id, change=change)


def _installed(services, chat_id: str, app_id: str) -> bool:
    try:
        installation, _ = get_installation(services.graph, chat_id, app_id)
    except GraphRetryable:
        raise  # the host retries the message
    except GraphError as exc:
        if exc.status == 404:
            return False  # the chat is gone
        raise
    return installation is not None


def _lifecycle(services, app_id: str, subscription_id: str, lifecycle_event: str) -> None:
    manager = SubscriptionManager(services)
    event(
        "subscription",
        "Lifecycle event %s for subscription %s (app %s)",
        lifecycle_event,
        subscription_id,
        app_id,
        appId=app_id,
        subscriptionId=subscription_id,
        lifecycleEvent=lifecycle_event,
    )
    if lifecycle_event == "reauthorizationRequired":
        manager.reauthorize(app_id, subscription_id)
    elif lifecycle_event == "subscriptionRemoved":
        manager.recreate(app_id, subscription_id)
    else:  # "missed": notifications were lost
        services.tracking.invalidate_registry(app_id)
