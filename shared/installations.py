"""Processing the notifications queued by POST /api/notifications: chat installations created or
deleted go into the registry; lifecycle events reauthorize or recreate the subscription."""

from __future__ import annotations

import logging
import re

from shared.messages import Notifications
from shared.registry import decode_installation_id
from shared.subscriptions import SubscriptionManager

RESOURCE = re.compile(r"appCatalogs/teamsApps\('([^']+)'\)/installations\('([^']+)'\)", re.IGNORECASE)
log = logging.getLogger(__name__)


def process(services, batch: Notifications) -> None:
    tracking, registry = services.tracking, services.registry
    for item in batch.items:
        subscription_id = str(item.get("subscriptionId") or "")
        app_id = tracking.app_of_subscription(subscription_id)
        if app_id is None:
            log.warning(
                "Notification for unknown subscription %s ignored", subscription_id, extra={"subscriptionId": subscription_id}
            )
            continue
        event = item.get("lifecycleEvent")
        if event:
            _lifecycle(services, app_id, subscription_id, str(event))
            continue
        change = item.get("changeType")
        match = RESOURCE.search(str(item.get("resource") or ""))
        installation_id = (item.get("resourceData") or {}).get("id") or (match.group(2) if match else None)
        decoded = decode_installation_id(installation_id) if isinstance(installation_id, str) else None
        if change not in ("created", "deleted"):
            log.info("Ignored a %r notification for app %s", change, app_id, extra={"appId": app_id})
            continue
        if decoded is None or decoded[1].lower() != app_id.lower():
            # we cannot tell which chat it is: the registry is no longer complete; the next auto run scans
            tracking.invalidate_registry(app_id, undecodable=1)
            log.warning(
                "Installation %s of app %s could not be read; the registry will be re-seeded by a scan",
                installation_id,
                app_id,
                extra={"appId": app_id, "installationId": installation_id},
            )
            continue
        chat_id = decoded[0]
        if change == "created":
            registry.add(app_id, [chat_id], source="notification")
        else:
            registry.remove(app_id, chat_id)
        tracking.count_events(app_id, 1)
        log.info(
            "Registry: app %s %s in chat %s",
            app_id,
            change,
            chat_id,
            extra={"appId": app_id, "chatId": chat_id, "change": change},
        )


def _lifecycle(services, app_id: str, subscription_id: str, event: str) -> None:
    manager = SubscriptionManager(services)
    log.info(
        "Lifecycle event %s for subscription %s (app %s)",
        event,
        subscription_id,
        app_id,
        extra={"appId": app_id, "subscriptionId": subscription_id, "lifecycleEvent": event},
    )
    if event == "reauthorizationRequired":
        manager.reauthorize(app_id, subscription_id)
    elif event == "subscriptionRemoved":
        manager.recreate(app_id)
    else:  # "missed": notifications were lost
        services.tracking.invalidate_registry(app_id)
