"""Graph subscriptions to the installations of each watched app, in the scopes the deployment
upgrades (UPGRADE_SCOPES): created, renewed before they expire (Teams allows at most 4,320
minutes), reauthorized and recreated on lifecycle events, replaced when the scopes change.

They ask for `created,deleted` only: in teams and personal scope every upgrade (ours included)
would also come back as an `updated` notification, each costing a GET, and says nothing new."""

from __future__ import annotations

import hashlib
import logging
from datetime import timedelta

from shared.automatic.watcher import org_app_ids
from shared.foundation.errors import GraphError
from shared.foundation.telemetry import event
from shared.graph.client import segment
from shared.stores.apps import Subscription, utcnow

LIFETIME = timedelta(minutes=4200)  # under Graph's 4,320-minute maximum for teamsAppInstallation
RENEW_WITHIN = timedelta(hours=24)
BUCKET = "subscriptions"
GRAPH_SCOPE_NAMES = {"chat": "groupChat", "team": "team", "personal": "personal"}  # scopeInfo/scope values
log = logging.getLogger(f"upgrader.{__name__}")


def installations_resource(app_id: str, scopes: tuple[str, ...]) -> str:
    clauses = " or ".join(f"(scopeInfo/scope eq '{GRAPH_SCOPE_NAMES[s]}')" for s in scopes)
    return f"/appCatalogs/teamsApps/{app_id}/installations?$filter={clauses}"


def fingerprint(client_state: str | None) -> str:
    """A subscription's clientState as stored beside it: enough to tell a rotated secret, not to read it."""
    return hashlib.sha256((client_state or "").encode()).hexdigest()[:16]


def _iso(moment) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.0000000Z")


class SubscriptionManager:
    def __init__(self, services) -> None:
        self._s = services

    def watched_app_ids(self) -> list[str]:
        settings = self._s.settings
        ids = list(settings.watched_app_ids)
        if settings.watch_org_apps:  # one catalog read for the org apps
            ids += [i for i in org_app_ids(self._s) if i not in ids]
        return ids

    def maintain(self) -> None:
        settings = self._s.settings
        if not settings.notification_url:
            log.info("Notifications are off (no NOTIFICATION_URL or NOTIFICATION_FUNCTION_KEY): no installation subscriptions")
            return
        for app_id in self.watched_app_ids():
            try:
                self.ensure(app_id)
            except GraphError as exc:
                event(
                    "subscription",
                    "Subscription for app %s: %s %s %s",
                    app_id,
                    exc.status,
                    exc.code,
                    exc.message,
                    appId=app_id,
                    graphStatus=exc.status,
                    graphCode=exc.code,
                    level=logging.ERROR,
                )

    def ensure(self, app_id: str) -> Subscription:
        """The app's subscription, created, renewed, or replaced when the scopes or the clientState changed
        (Graph keeps sending the old clientState, which the notification route would refuse)."""
        current = self._s.apps.subscription(app_id)
        settings = self._s.settings
        if current and (
            current.scopes != settings.upgrade_scopes or current.client_state != fingerprint(settings.notification_client_state)
        ):
            self.replace(app_id, current)
            current = None
        if current and current.expires_at - utcnow() > RENEW_WITHIN:
            return current
        if current:
            try:
                return self.renew(app_id, current)
            except GraphError as exc:
                if exc.status != 404:
                    raise
        return self.create(app_id)

    def create(self, app_id: str) -> Subscription:
        settings = self._s.settings
        started = utcnow()
        scopes = settings.upgrade_scopes
        body = {
            "changeType": "created,deleted",
            "notificationUrl": settings.notification_url,
            "lifecycleNotificationUrl": settings.notification_url,
            "resource": installations_resource(app_id, scopes),
            "expirationDateTime": _iso(started + LIFETIME),
            "clientState": settings.notification_client_state,
        }
        # a 5xx may have created it: no blind retry (a duplicate would notify twice for 70 hours)
        created = self._s.graph.post("/subscriptions", body, bucket=BUCKET, retry_unavailable=False).body or {}
        subscription = Subscription(
            created["id"], started + LIFETIME, started, scopes, fingerprint(settings.notification_client_state)
        )
        self._s.apps.set_subscription(app_id, subscription)
        event(
            "subscription",
            "Subscribed to installations of app %s in %s (subscription %s)",
            app_id,
            ", ".join(scopes),
            subscription.id,
            appId=app_id,
            subscriptionId=subscription.id,
        )
        return subscription

    def renew(self, app_id: str, current: Subscription) -> Subscription:
        expires = utcnow() + LIFETIME
        self._s.graph.send(
            "PATCH",
            self._s.graph.url(f"/subscriptions/{segment(current.id)}"),
            body={"expirationDateTime": _iso(expires)},
            bucket=BUCKET,
        )
        renewed = Subscription(current.id, expires, current.started_at, current.scopes, current.client_state)
        self._s.apps.set_subscription(app_id, renewed)
        return renewed

    def replace(self, app_id: str, current: Subscription) -> None:
        """UPGRADE_SCOPES or NOTIFICATION_CLIENT_STATE changed: the old subscription goes (the caller creates one for the new
        scopes); its start resets every scope's registry trust, so each is seeded again."""
        try:
            self._s.graph.send("DELETE", self._s.graph.url(f"/subscriptions/{segment(current.id)}"), bucket=BUCKET)
        except GraphError as exc:
            if exc.status != 404:
                raise
        self._s.apps.drop_subscription(app_id)

    def reauthorize(self, app_id: str, subscription_id: str) -> None:
        try:
            self._s.graph.post(f"/subscriptions/{segment(subscription_id)}/reauthorize", {}, bucket=BUCKET)
        except GraphError as exc:
            if exc.status != 404:
                raise
            self.recreate(app_id, subscription_id)

    def recreate(self, app_id: str, removed_id: str) -> None:
        """The subscription is gone: notifications were lost, so the registry needs a new seeding scan.

        Done once per removed subscription: a repeated lifecycle event finds a newer one in place."""
        current = self._s.apps.subscription(app_id)
        if current is not None and current.id != removed_id:
            return
        self._s.apps.drop_subscription(app_id)
        self._s.apps.invalidate_registry(app_id)
        self.create(app_id)
