"""Graph emulator extension: catalog publishing and review, installs and uninstalls in chats, teams
and users' personal scope, change notification subscriptions with the validation handshake, and
notification delivery.

  POST   /appCatalogs/teamsApps/{id}/appDefinitions[?requiresReview=true]   (application/zip with manifest.json)
  PATCH  /appCatalogs/teamsApps/{id}/appDefinitions/{definitionId}           {"publishingState": "published"}
  POST   /chats/{id}/installedApps                                           {"teamsApp@odata.bind": ".../teamsApps/{id}"}
  DELETE /chats/{id}/installedApps/{installationId}
  POST   /teams/{id}/installedApps, DELETE /teams/{id}/installedApps/{installationId}
  POST   /users/{id}/teamwork/installedApps, DELETE /users/{id}/teamwork/installedApps/{installationId}
  POST   /subscriptions, GET/PATCH/DELETE /subscriptions/{id}, POST /subscriptions/{id}/reauthorize

Subscriptions are to /appCatalogs/teamsApps/{id}/installations, filtered to any of the scopes
(scopeInfo/scope eq 'groupChat' | 'team' | 'personal', joined with " or ") or to none (all scopes).
Deliveries follow the documented webhook contract: basic notifications (no resource data) with
clientState, retried when the endpoint does not answer 2xx within 3 seconds. Installs and uninstalls
notify in every scope; upgrades only in teams and personal scope (Graph does not deliver them for chats).
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

from devtools.app_versions import is_valid
from devtools.graph_emulator import (
    CHAT_SCOPE,
    PERSONAL_SCOPE,
    TEAM_SCOPE,
    WRITE_TEAM_APPS,
    WRITE_USER_APPS,
    GraphEmulator,
    GraphFault,
    InstallScope,
)
from devtools.identity import TENANT_ID
from devtools.tenant import Definition, Installable

MAX_LIFETIME = timedelta(minutes=4320)
PUBLISHERS = {"AppCatalog.Submit", "AppCatalog.ReadWrite.All", "Directory.ReadWrite.All"}
INSTALLERS = {"TeamsAppInstallation.ReadWriteForChat.All", "TeamsAppInstallation.ReadWriteAndConsentForChat.All"}
SUBSCRIBERS = {
    "TeamsAppInstallation.ReadForChat.All",
    "TeamsAppInstallation.ReadWriteForChat.All",
    "TeamsAppInstallation.ReadWriteAndConsentForChat.All",
    "TeamsAppInstallation.Read.All",
}
TEAM_SUBSCRIBERS = {
    "TeamsAppInstallation.ReadForTeam.All",
    "TeamsAppInstallation.ReadWriteSelfForTeam.All",
    "TeamsAppInstallation.ReadWriteForTeam.All",
    "TeamsAppInstallation.ReadWriteAndConsentSelfForTeam.All",
    "TeamsAppInstallation.ReadWriteAndConsentForTeam.All",
    "TeamsAppInstallation.Read.All",
}
PERSONAL_SUBSCRIBERS = {
    "TeamsAppInstallation.ReadForUser.All",
    "TeamsAppInstallation.ReadWriteSelfForUser.All",
    "TeamsAppInstallation.ReadWriteForUser.All",
    "TeamsAppInstallation.ReadWriteAndConsentSelfForUser.All",
    "TeamsAppInstallation.ReadWriteAndConsentForUser.All",
    "TeamsAppInstallation.Read.All",
}
SCOPE_SUBSCRIBERS = {"groupChat": SUBSCRIBERS, "team": TEAM_SUBSCRIBERS, "personal": PERSONAL_SUBSCRIBERS}
ALL_SCOPES_SUBSCRIBERS = {"TeamsAppInstallation.Read.All"}  # a subscription without a scope filter
ANY_SUBSCRIBER = SUBSCRIBERS | TEAM_SUBSCRIBERS | PERSONAL_SUBSCRIBERS
ALL_SCOPES = frozenset(SCOPE_SUBSCRIBERS)
RESOURCE = re.compile(r"^/?appCatalogs/teamsApps/([^/?]+)/installations(?:\?\$filter=(.*))?$")
SCOPE_TERM = re.compile(r"\(scopeInfo/scope eq '(groupChat|team|personal)'\)")


def parse_resource(resource: str) -> tuple[str, set[str] | None] | None:
    """(app id, the scopes the filter names or None for no filter) of an installations resource, or
    None if it is not one."""
    match = RESOURCE.match(resource)
    if match is None:
        return None
    if match.group(2) is None:
        return match.group(1), None
    terms = [SCOPE_TERM.fullmatch(t) for t in re.split(r"\s+or\s+", match.group(2).strip())]
    names = [t.group(1) for t in terms if t]
    if len(names) != len(terms) or len(set(names)) != len(names):
        return None
    return match.group(1), set(names)


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
    scopes: set[str] = field(default_factory=lambda: set(ALL_SCOPES))  # groupChat, team, personal


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
            ("DELETE", r"chats/([^/]+)/installedApps/(.+)", self._uninstall),  # an installation id may hold "/"
            ("POST", r"teams/([^/]+)/installedApps", self._install_team),
            ("DELETE", r"teams/([^/]+)/installedApps/(.+)", self._uninstall_team),
            ("POST", r"users/([^/]+)/teamwork/installedApps", self._install_user),
            ("DELETE", r"users/([^/]+)/teamwork/installedApps/(.+)", self._uninstall_user),
            ("POST", r"subscriptions", self._create),
            ("GET", r"subscriptions/([^/]+)", self._get),
            ("PATCH", r"subscriptions/([^/]+)", self._renew),
            ("DELETE", r"subscriptions/([^/]+)", self._delete),
            ("POST", r"subscriptions/([^/]+)/reauthorize", self._reauthorize),
        ]
        for method, pattern, route in routes:
            regex = re.compile(f"^{pattern}$")
            emulator.extra_routes.append((method, lambda path, r=regex: r.match("/".join(path)), route))
        emulator.upgrade_listeners.append(self._upgraded)

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
        if not isinstance(version, str) or not is_valid(version):
            raise GraphFault(
                400,
                "BadRequest",
                f"UnableToParseTeamsAppManifest: SchemaError_Pattern: version {version!r} is not MAJOR.MINOR.PATCH.",
            )
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
        return self._install_into(self.emulator._chat(match.group(1)), body, CHAT_SCOPE, check_blocked=False)

    def _install_team(self, handler, match, query, body, record):
        record.kind, record.bucket, record.team = "installTeam", "installedApps.post", match.group(1)
        self.emulator._authorize(handler, WRITE_TEAM_APPS)
        return self._install_into(self.emulator._team(match.group(1)), body, TEAM_SCOPE)

    def _install_user(self, handler, match, query, body, record):
        record.kind, record.bucket, record.user = "installUser", "installedApps.post", match.group(1)
        self.emulator._authorize(handler, WRITE_USER_APPS)
        return self._install_into(self.emulator._teams_user(match.group(1)), body, PERSONAL_SCOPE)

    def _uninstall(self, handler, match, query, body, record):
        record.kind, record.bucket, record.chat = "uninstall", "installedApps.delete", match.group(1)
        self.emulator._authorize(handler, INSTALLERS)
        return self._uninstall_from(self.emulator._chat(match.group(1)), match.group(2), CHAT_SCOPE)

    def _uninstall_team(self, handler, match, query, body, record):
        record.kind, record.bucket, record.team = "uninstallTeam", "installedApps.delete", match.group(1)
        self.emulator._authorize(handler, WRITE_TEAM_APPS)
        return self._uninstall_from(self.emulator._team(match.group(1)), match.group(2), TEAM_SCOPE)

    def _uninstall_user(self, handler, match, query, body, record):
        record.kind, record.bucket, record.user = "uninstallUser", "installedApps.delete", match.group(1)
        self.emulator._authorize(handler, WRITE_USER_APPS)
        return self._uninstall_from(self.emulator._teams_user(match.group(1)), match.group(2), PERSONAL_SCOPE)

    def _install_into(self, place: Installable, body: bytes, scope: InstallScope, *, check_blocked: bool = True):
        bind = json.loads(body or b"{}").get("teamsApp@odata.bind", "")
        app = self.tenant.apps.get(bind.rstrip("/").rpartition("/")[2].strip("'()"))
        if app is None or app.newest_published() is None:
            raise GraphFault(400, "BadRequest", "teamsApp@odata.bind must name a published catalog app.")
        with self.tenant.lock:
            if check_blocked and app.id in place.blocked:
                raise GraphFault(403, "Forbidden", scope.blocked_message)
            if app.id in place.installed:
                where = "for this user" if scope is PERSONAL_SCOPE else f"in this {scope.noun}"
                raise GraphFault(409, "Conflict", f"The app is already installed {where}.")
            place.installed[app.id] = app.newest_published().version
        self.notify(app.id, place.installation_id(app.id), "created", scope.name)
        return 201, {"id": place.installation_id(app.id)}, {}

    def _uninstall_from(self, place: Installable, installation_id: str, scope: InstallScope):
        with self.tenant.lock:
            app_id = place.app_of(installation_id)
            if app_id is None:
                raise GraphFault(404, "NotFound", "No such installation.")
            installation_id = place.installation_id(app_id)
            del place.installed[app_id]
        self.notify(app_id, installation_id, "deleted", scope.name)
        return 204, None, {}

    def _upgraded(self, scope: str, app_id: str, installation_id: str) -> None:
        # Graph's known issue: upgrade events in chats are not delivered ("no workaround"); elsewhere they are
        if scope != CHAT_SCOPE.name:
            self.notify(app_id, installation_id, "updated", scope)

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
        self.emulator._authorize(handler, ANY_SUBSCRIBER)
        request = json.loads(body or b"{}")
        resource = parse_resource(str(request.get("resource", "")))
        if resource is None or resource[0] not in self.tenant.apps:
            raise GraphFault(400, "InvalidRequest", f"Resource '{request.get('resource')}' is not supported.")
        self._require_scope_roles(handler, resource[1])
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
            resource[0],
            request["resource"],
            changes,
            urls[0],
            request.get("lifecycleNotificationUrl"),
            request.get("clientState"),
            expires,
            scopes=set(resource[1] or ALL_SCOPES),
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

    def _require_scope_roles(self, handler, scopes: set[str] | None) -> None:
        """At least one read permission for each scope the resource filters on (Read.All for no filter)."""
        roles = self.emulator._roles(handler)
        for needed in [ALL_SCOPES_SUBSCRIBERS] if scopes is None else [SCOPE_SUBSCRIBERS[s] for s in sorted(scopes)]:
            if not needed & roles:
                raise GraphFault(
                    403,
                    "Forbidden",
                    f"Missing role permissions on the request. API requires one of '{', '.join(sorted(needed))}'.",
                )

    def _find(self, handler, subscription_id: str) -> Subscription:
        """A live subscription the token may manage."""
        self.emulator._authorize(handler, ANY_SUBSCRIBER)
        subscription = self.subscriptions.get(subscription_id)
        if subscription is None or subscription.expires < datetime.now(UTC):
            raise GraphFault(404, "ResourceNotFound", f"The object was not found: subscription {subscription_id}.")
        parsed = parse_resource(subscription.resource)
        self._require_scope_roles(handler, parsed[1] if parsed else None)
        return subscription

    def _get(self, handler, match, query, body, record):
        record.kind, record.bucket = "getSubscription", "subscriptions"
        return 200, self._json(self._find(handler, match.group(1))), {}

    def _renew(self, handler, match, query, body, record):
        record.kind, record.bucket = "renewSubscription", "subscriptions"
        subscription = self._find(handler, match.group(1))
        expires = _parse_time(json.loads(body or b"{}").get("expirationDateTime", ""))
        if expires - datetime.now(UTC) > MAX_LIFETIME:
            raise GraphFault(400, "InvalidRequest", "Subscription expiration can only be 4320 minutes in the future.")
        subscription.expires = expires
        return 200, self._json(subscription), {}

    def _delete(self, handler, match, query, body, record):
        record.kind, record.bucket = "deleteSubscription", "subscriptions"
        self.subscriptions.pop(self._find(handler, match.group(1)).id)
        return 204, None, {}

    def _reauthorize(self, handler, match, query, body, record):
        record.kind, record.bucket = "reauthorizeSubscription", "subscriptions"
        self._find(handler, match.group(1)).reauthorized += 1
        return 204, None, {}

    # ---- deliveries -----------------------------------------------------------------------------

    def notify(self, app_id: str, installation_id: str, change: str, scope: str = "groupChat") -> list[Delivery]:
        """Sends a basic change notification to every live subscription on the app's installations in
        `scope` (groupChat, team or personal) that asked for `change`. Like Graph's v1.0 basic
        notifications it does not say which scope."""
        now = datetime.now(UTC)
        resource = f"appCatalogs/teamsApps('{app_id}')/installations('{installation_id}')"
        deliveries = []
        for s in list(self.subscriptions.values()):
            if s.app_id != app_id or scope not in s.scopes or change not in s.change_types or s.expires < now:
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
