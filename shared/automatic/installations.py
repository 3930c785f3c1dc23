"""Processing the notifications queued by POST /api/notifications: for an installation created or
deleted, the registry records whether the app is installed there now (one GET, so that
out-of-order or repeated notifications do no harm); lifecycle events reauthorize or recreate the
subscription.

A basic notification names the installation only: its id is base64("{resource}##{teamsAppId}"),
where the resource is a chat id (19:...) or a GUID, a team's or a user's: the id does not say
which, so a GUID is looked up in each GUID scope the subscription covers (at most one answers).
"""

from __future__ import annotations

import base64
import binascii
import logging
import re

from shared.automatic.subscriptions import SubscriptionManager
from shared.domain.messages import Notifications
from shared.domain.targets import Target
from shared.foundation.errors import GraphError, GraphRetryable
from shared.foundation.settings import GUID
from shared.foundation.telemetry import event
from shared.scopes import scope as scope_named

RESOURCE = re.compile(r"appCatalogs/teamsApps\('([^']+)'\)/installations\('([^']+)'\)", re.IGNORECASE)


def decode_installation_id(installation_id: str) -> tuple[str, str] | None:
    """(resource id, teams app id) of an installation id base64("{resource}##{teamsAppId}"); None when it is not."""
    try:
        text = base64.b64decode(installation_id + "=" * (-len(installation_id) % 4), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    resource, sep, app_id = text.rpartition("##")
    if not sep or not app_id or not (resource.startswith("19:") or GUID.match(resource)):
        return None
    return resource, app_id


def candidates(resource_id: str, scopes: tuple[str, ...]) -> list[Target]:
    """The targets an installation's resource may be, among the subscription's scopes."""
    names = ("chat",) if resource_id.startswith("19:") else ("team", "personal")
    return [Target(s, resource_id) for s in names if s in scopes]


def process(services, batch: Notifications) -> None:
    apps = services.apps
    for item in batch.items:
        subscription_id = str(item.get("subscriptionId") or "")
        app_id = apps.app_of_subscription(subscription_id)
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
        if change not in ("created", "deleted"):
            event("registry", "Ignored a %r notification for app %s", change, app_id, appId=app_id, change="ignored")
            continue
        match = RESOURCE.search(str(item.get("resource") or ""))
        installation_id = (item.get("resourceData") or {}).get("id") or (match.group(2) if match else None)
        decoded = decode_installation_id(installation_id) if isinstance(installation_id, str) else None
        subscription = apps.subscription(app_id)
        options = candidates(decoded[0], subscription.scopes if subscription else ()) if decoded else []
        if not options or decoded[1].lower() != app_id.lower():
            # we cannot tell where it is: the registry is no longer complete; the next auto run scans
            apps.invalidate_registry(app_id, undecodable=1)
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
        _record(services, app_id, options, change)


def _record(services, app_id: str, options: list[Target], change: str) -> None:
    """Notifications may arrive out of order or twice, and carry no time: take them as a hint and
    record what Graph says now."""
    found = next((t for t in options if _installed(services, t, app_id)), None)
    if found is not None:
        services.registry.add(app_id, [found], source="notification")
    for target in options:
        if target != found:
            services.registry.remove(app_id, target)
    services.apps.count_events(app_id, 1)
    where = found or options[0]
    event(
        "registry",
        "Registry: app %s %s in %s %s",
        app_id,
        change,
        where.label.lower(),
        where.id,
        appId=app_id,
        scope=where.scope,
        targetId=where.id,
        change=change,
    )


def _installed(services, target: Target, app_id: str) -> bool:
    try:
        installation, _ = scope_named(target.scope).get_installation(services.graph, target.id, app_id)
    except GraphRetryable:
        raise  # the host retries the message
    except GraphError as exc:
        # 404: the chat, team or user is gone. Any other answer (an archived team's 403) leaves it
        # unknown: the registry errs on the side of holding it, and a run checks it anyway
        return exc.status != 404
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
        services.apps.invalidate_registry(app_id)
