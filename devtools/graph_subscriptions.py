"""Graph emulator extension: catalog publishing and review, chat installs and uninstalls, change
notification subscriptions with the validation handshake, and notification delivery.

  POST   /appCatalogs/teamsApps/{id}/appDefinitions[?requiresReview=true]   (application/zip with manifest.json)
  PATCH  /appCatalogs/teamsApps/{id}/appDefinitions/{definitionId}           {"publishingState": "published"}
  POST   /chats/{id}/installedApps                                           {"teamsApp@odata.bind": ".../teamsApps/{id}"}
  DELETE /chats/{id}/installedApps/{installationId}
  POST   /subscriptions, GET/PATCH/DELETE /subscriptions/{id}, POST /subscriptions/{id}/reauthorize

Deliveries follow the documented webhook contract: basic notifications (no resource data) with
clientState, retried when the endpoint does not answer 2xx within 3 seconds.
"""

from __future__ import annotations

import io
import json
import re
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import requests

from devtools.graph_emulator import GraphEmulator, GraphFault
from devtools.identity import TENANT_ID
from devtools.tenant import Definition

MAX_LIFETIME = timedelta(minutes=4320)
PUBLISHERS = {"AppCatalog.Submit", "AppCatalog.ReadWrite.All", "Directory.ReadWrite.All"}
INSTALLERS = {"TeamsAppInstallation.ReadWriteForChat.All", "TeamsAppInstallation.ReadWriteAndConsentForChat.All"}
SUBSCRIBERS = {
    "TeamsAppInstallation.ReadForChat.All",
    "TeamsAppInstallation.ReadWriteForChat.All",
    "TeamsAppInstallation.ReadWriteAndConsentForChat.All",
    "TeamsAppInstallation.Read.All",
}
RESOURCE = re.compile(r"^/?appCatalogs/teamsApps/([^/?]+)/installations(\?\$filter=\(scopeInfo/scope eq 'groupChat'\))?$")


@dataclass
class Subscription:
    id: str
    app_id: str
    resource: str
    change_types: set[str]
    notification_url: str
    lifecycle_url: str | None
    client_state: str | None
    expires: datetime
    reauthorized: int = 0


@dataclass
class Delivery:
    url: str
    body: dict
    status: int | None = None
    seconds: float = 0.0
    attempts: int = 0
    done: threading.Event = field(default_factory=threading.Event)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.0000000Z")


def _parse_time(text: str) -> datetime:
    text = re.sub(r"(\.\d{6})\d+", r"\1", text.replace("Z", "+00:00"))
    return datetime.fromisoformat(text)


class Subscriptions:
    def __init__(self, emulator: GraphEmulator, *, delivery_timeout: float = 3.0, retries: int = 3) -> None:
        self.emulator = emulator
        self.tenant = emulator.tenant
        self.subscriptions: dict[str, Subscription] = {}
        self.deliveries: list[Delivery] = []
        self.handshakes: list[tuple[str, int, float]] = []  # (url, status, seconds)
        self.delivery_timeout = delivery_timeout
        self.retries = retries
        routes = [
            ("POST", r"appCatalogs/teamsApps/([^/]+)/appDefinitions", self._publish),
            ("PATCH", r"appCatalogs/teamsApps/([^/]+)/appDefinitions/([^/]+)", self._review),
            ("POST", r"chats/([^/]+)/installedApps", self._install),
            ("DELETE", r"chats/([^/]+)/installedApps/([^/]+)", self._uninstall),
            ("POST", r"subscriptions", self._create),
            ("GET", r"subscriptions/([^/]+)", self._get),
            ("PATCH", r"subscriptions/([^/]+)", self._renew),
            ("DELETE", r"subscriptions/([^/]+)", self._delete),
            ("POST", r"subscriptions/([^/]+)/reauthorize", self._reauthorize),
        ]
        for method, pattern, route in routes:
            regex = re.compile(f"^{pattern}$")
            emulator.extra_routes.append((method, lambda path, r=regex: r.match("/".join(path)), route))

    # ---- catalog --------------------------------------------------------------------------------

    def _publish(self, handler, match, query, body, record):
        record.kind, record.bucket = "publishDefinition", "appCatalogs.post"
        self.emulator._authorize(handler, PUBLISHERS)
        app = self.tenant.apps.get(match.group(1))
        if app is None:
            raise GraphFault(404, "NotFound", f"App {match.group(1)} is not in the catalog.")
        try:
            manifest = json.loads(zipfile.ZipFile(io.BytesIO(body)).read("manifest.json"))
            version = manifest["version"]
        except (zipfile.BadZipFile, KeyError, ValueError):
            raise GraphFault(
                400, "BadRequest", "UnableToParseTeamsAppManifest: the package has no valid manifest.json."
            ) from None
        review = query.get("requiresReview", "").lower() == "true"
        permissions = [
            (p["name"], p["type"].lower())
            for p in manifest.get("authorization", {}).get("permissions", {}).get("resourceSpecific", [])
        ]
        definition = self.tenant.publish(app.id, version, permissions=permissions or None, requires_review=review)
        if review:
            return (
                201,
                {"id": definition.id, "teamsAppId": app.id, "version": version, "publishingState": "submitted"},
                {"Location": f"{self.emulator.base_url}/appCatalogs/teamsApps/{app.id}/appDefinitions/{definition.id}"},
            )
        return 204, None, {}

    def _review(self, handler, match, query, body, record):
        record.kind, record.bucket = "reviewDefinition", "appCatalogs.post"
        self.emulator._authorize(handler, PUBLISHERS)
        app = self.tenant.apps.get(match.group(1))
        definition: Definition | None = next((d for d in (app.definitions if app else []) if d.id == match.group(2)), None)
        if definition is None:
            raise GraphFault(404, "NotFound", "No such app definition.")
        state = json.loads(body or b"{}").get("publishingState")
        if state not in ("published", "rejected") or definition.state != "submitted":
            raise GraphFault(400, "BadRequest", "Only a submitted definition can be published or rejected.")
        with self.tenant.lock:
            definition.state = state
        return 200, {"id": definition.id, "version": definition.version, "publishingState": state}, {}

    # ---- installations --------------------------------------------------------------------------

    def _install(self, handler, match, query, body, record):
        record.kind, record.bucket, record.chat = "install", "installedApps.post", match.group(1)
        self.emulator._authorize(handler, INSTALLERS)
        chat = self.emulator._chat(match.group(1))
        bind = json.loads(body or b"{}").get("teamsApp@odata.bind", "")
        app = self.tenant.apps.get(bind.rstrip("/").rpartition("/")[2].strip("'()"))
        if app is None or app.newest_published() is None:
            raise GraphFault(400, "BadRequest", "teamsApp@odata.bind must name a published catalog app.")
        with self.tenant.lock:
            if app.id in chat.installed:
                raise GraphFault(409, "Conflict", "The app is already installed in this chat.")
            chat.installed[app.id] = app.newest_published().version
        self.notify(app.id, chat.installation_id(app.id), "created")
        return 201, {"id": chat.installation_id(app.id)}, {}

    def _uninstall(self, handler, match, query, body, record):
        record.kind, record.bucket, record.chat = "uninstall", "installedApps.delete", match.group(1)
        self.emulator._authorize(handler, INSTALLERS)
        chat = self.emulator._chat(match.group(1))
        with self.tenant.lock:
            app_id = next((a for a in chat.installed if chat.installation_id(a) == match.group(2)), None)
            if app_id is None:
                raise GraphFault(404, "NotFound", "No such installation.")
            installation_id = chat.installation_id(app_id)
            del chat.installed[app_id]
        self.notify(app_id, installation_id, "deleted")
        return 204, None, {}

    # ---- subscriptions --------------------------------------------------------------------------

    def _handshake(self, url: str) -> bool:
        token = f"Validation: Testing client application reachability for subscription Request-Id: {uuid.uuid4()}"
        started = time.monotonic()
        try:
            response = requests.post(
                url, params={"validationToken": token}, headers={"Content-Type": "text/plain; charset=utf-8"}, timeout=10
            )
            ok = (
                response.status_code == 200
                and response.text == token
                and response.headers.get("Content-Type", "").startswith("text/plain")
            )
            self.handshakes.append((url, response.status_code, time.monotonic() - started))
        except requests.RequestException:
            self.handshakes.append((url, 0, time.monotonic() - started))
            ok = False
        return ok

    def _create(self, handler, match, query, body, record):
        record.kind, record.bucket = "createSubscription", "subscriptions"
        self.emulator._authorize(handler, SUBSCRIBERS)
        request = json.loads(body or b"{}")
        resource = RESOURCE.match(request.get("resource", ""))
        if resource is None or resource.group(1) not in self.tenant.apps:
            raise GraphFault(400, "InvalidRequest", f"Resource '{request.get('resource')}' is not supported.")
        changes = set(str(request.get("changeType", "")).split(","))
        if not changes or not changes <= {"created", "updated", "deleted"}:
            raise GraphFault(400, "InvalidRequest", "changeType must be created, updated and/or deleted.")
        try:
            expires = _parse_time(request["expirationDateTime"])
        except (KeyError, ValueError):
            raise GraphFault(400, "InvalidRequest", "expirationDateTime is required.") from None
        now = datetime.now(UTC)
        if expires - now > MAX_LIFETIME:
            raise GraphFault(400, "InvalidRequest", "Subscription expiration can only be 4320 minutes in the future.")
        if expires - now > timedelta(hours=1) and not request.get("lifecycleNotificationUrl"):
            raise GraphFault(
                400,
                "InvalidRequest",
                "lifecycleNotificationUrl is a required property for subscription creation "
                "on this resource when the expirationDateTime value is set to greater than 1 hour.",
            )
        if len(request.get("clientState") or "") > 255:
            raise GraphFault(400, "InvalidRequest", "clientState is longer than 255 characters.")
        urls = [request.get("notificationUrl", "")] + (
            [request["lifecycleNotificationUrl"]] if request.get("lifecycleNotificationUrl") else []
        )
        if not all(self._handshake(url) for url in urls):
            raise GraphFault(
                400,
                "ValidationError",
                "Subscription validation request failed. Notification endpoint must respond with 200 OK to validation request.",
            )
        subscription = Subscription(
            str(uuid.uuid4()),
            resource.group(1),
            request["resource"],
            changes,
            urls[0],
            request.get("lifecycleNotificationUrl"),
            request.get("clientState"),
            expires,
        )
        self.subscriptions[subscription.id] = subscription
        return 201, self._json(subscription), {}

    def _json(self, s: Subscription) -> dict:
        return {
            "id": s.id,
            "resource": s.resource,
            "changeType": ",".join(sorted(s.change_types)),
            "clientState": s.client_state,
            "notificationUrl": s.notification_url,
            "lifecycleNotificationUrl": s.lifecycle_url,
            "expirationDateTime": _iso(s.expires),
            "applicationId": self.emulator.authority.client_id,
        }

    def _find(self, subscription_id: str) -> Subscription:
        subscription = self.subscriptions.get(subscription_id)
        if subscription is None or subscription.expires < datetime.now(UTC):
            raise GraphFault(404, "ResourceNotFound", f"The object was not found: subscription {subscription_id}.")
        return subscription

    def _get(self, handler, match, query, body, record):
        record.kind, record.bucket = "getSubscription", "subscriptions"
        self.emulator._authorize(handler, SUBSCRIBERS)
        return 200, self._json(self._find(match.group(1))), {}

    def _renew(self, handler, match, query, body, record):
        record.kind, record.bucket = "renewSubscription", "subscriptions"
        self.emulator._authorize(handler, SUBSCRIBERS)
        subscription = self._find(match.group(1))
        expires = _parse_time(json.loads(body or b"{}").get("expirationDateTime", ""))
        if expires - datetime.now(UTC) > MAX_LIFETIME:
            raise GraphFault(400, "InvalidRequest", "Subscription expiration can only be 4320 minutes in the future.")
        subscription.expires = expires
        return 200, self._json(subscription), {}

    def _delete(self, handler, match, query, body, record):
        record.kind, record.bucket = "deleteSubscription", "subscriptions"
        self.emulator._authorize(handler, SUBSCRIBERS)
        self.subscriptions.pop(self._find(match.group(1)).id)
        return 204, None, {}

    def _reauthorize(self, handler, match, query, body, record):
        record.kind, record.bucket = "reauthorizeSubscription", "subscriptions"
        self.emulator._authorize(handler, SUBSCRIBERS)
        self._find(match.group(1)).reauthorized += 1
        return 204, None, {}

    # ---- deliveries -----------------------------------------------------------------------------

    def notify(self, app_id: str, installation_id: str, change: str) -> list[Delivery]:
        """Sends a basic change notification to every live subscription on the app's installations."""
        now = datetime.now(UTC)
        resource = f"appCatalogs/teamsApps('{app_id}')/installations('{installation_id}')"
        deliveries = []
        for s in list(self.subscriptions.values()):
            if s.app_id != app_id or change not in s.change_types or s.expires < now:
                continue
            item = {
                "subscriptionId": s.id,
                "subscriptionExpirationDateTime": _iso(s.expires),
                "changeType": change,
                "clientState": s.client_state,
                "resource": resource,
                "tenantId": TENANT_ID,
                "resourceData": {
                    "id": installation_id,
                    "@odata.type": "#Microsoft.Graph.teamsAppInstallation",
                    "@odata.id": resource,
                },
            }
            deliveries.append(self.send(s.notification_url, {"value": [item]}))
        return deliveries

    def lifecycle(self, subscription_id: str, event: str) -> Delivery:
        s = self.subscriptions[subscription_id]
        if event == "subscriptionRemoved":
            self.subscriptions.pop(subscription_id)
        item = {
            "subscriptionId": s.id,
            "subscriptionExpirationDateTime": _iso(s.expires),
            "tenantId": TENANT_ID,
            "clientState": s.client_state,
            "lifecycleEvent": event,
        }
        return self.send(s.lifecycle_url or s.notification_url, {"value": [item]})

    def send(self, url: str, body: dict) -> Delivery:
        delivery = Delivery(url, body)
        self.deliveries.append(delivery)
        threading.Thread(target=self._send, args=(delivery,), daemon=True).start()
        return delivery

    def _send(self, delivery: Delivery) -> None:
        for attempt in range(self.retries):
            delivery.attempts = attempt + 1
            started = time.monotonic()
            try:
                response = requests.post(delivery.url, json=delivery.body, timeout=self.delivery_timeout)
                delivery.status = response.status_code
            except requests.RequestException:
                delivery.status = None
            delivery.seconds = time.monotonic() - started
            if delivery.status is not None and 200 <= delivery.status < 300:
                break
            time.sleep(0.2)
        delivery.done.set()
