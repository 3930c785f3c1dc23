"""A loopback Microsoft Graph that follows the documented behaviour the upgrader relies on.

Endpoints: /users, /groups/{id}/transitiveMembers/microsoft.graph.user, /users/{id}/chats,
/chats/{id}/installedApps, POST /chats/{id}/installedApps/{id}/upgrade, /teams, /users/{id}/joinedTeams,
/teams/{id}/installedApps, POST /teams/{id}/installedApps/{id}/upgrade, /users/{id}/teamwork/installedApps,
POST /users/{id}/teamwork/installedApps/{id}/upgrade, /appCatalogs/teamsApps (plus catalog publishing,
installs and subscriptions, see `graph_subscriptions`). Paging with @odata.nextLink and $skiptoken;
$filter in the documented forms (anything else is a 400); Graph's error bodies; a bearer token check
with app roles; throttling per bucket (requests per any one-second window; one POST installedApps
bucket for chats, teams and users), per chat (one per second), per team (four per second) and per
user on List chats (five per second), answered with 429 + Retry-After. Latency and faults (429/5xx
storms) can be injected; every request is logged for assertions.
"""

from __future__ import annotations

import base64
import json
import math
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, unquote, urlencode

from devtools.graph_limits import Limits, Request, RequestLog, Throttle
from devtools.identity import TENANT_ID, TokenAuthority
from devtools.loopback import reply, serve_calls, shutdown
from devtools.tenant import Chat, Installable, Team, Tenant, User

GRAPH_AUDIENCE = "https://graph.microsoft.com"
INSTALLATION = "TeamsAppInstallation."
# The application permissions each call's Graph reference page lists ("least privileged" and "higher
# privileged"). The `...Self...` ones are left out: they let a Teams app manage itself only, which
# the emulated apps never are; resource-specific consent (`...Chat`, `...Group`) is not emulated.
WRITE_CHAT_APPS = {
    INSTALLATION + p for p in ("ReadWriteForChat.All", "ReadWriteAndConsentForChat.All", "ManageSelectedForChat.All")
}
READ_CHAT_APPS = WRITE_CHAT_APPS | {INSTALLATION + "ReadForChat.All", INSTALLATION + "Read.All"}
WRITE_TEAM_APPS = {
    *(INSTALLATION + p for p in ("ReadWriteForTeam.All", "ReadWriteAndConsentForTeam.All", "ManageSelectedForTeam.All")),
    "Group.ReadWrite.All",  # "supported only for backward compatibility"
    "Directory.ReadWrite.All",
}
READ_TEAM_APPS = WRITE_TEAM_APPS | {
    INSTALLATION + "ReadForTeam.All",
    INSTALLATION + "Read.All",
    "Group.Read.All",
    "Directory.Read.All",
}
WRITE_USER_APPS = {
    INSTALLATION + p
    for p in (
        "ReadWriteForUser.All",
        "ReadWriteAndConsentForUser.All",
        "ManageSelectedForUser.All",
        "ReadWriteSelectedForUser.All",
    )
}
READ_USER_APPS = WRITE_USER_APPS | {INSTALLATION + "ReadForUser.All", INSTALLATION + "Read.All"}
LIST_TEAMS = {"Team.ReadBasic.All", "TeamSettings.Read.All", "TeamSettings.ReadWrite.All"}  # GET /teams, joinedTeams
LIST_CHATS = {"Chat.ReadBasic.All", "Chat.Read.All", "Chat.ReadWrite.All"}
READ_USERS = {"User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}
READ_MEMBERS = {
    "GroupMember.ReadBasic.All",
    "GroupMember.Read.All",
    "GroupMember.ReadWrite.All",
    "Group.ReadBasic.All",
    "Group.Read.All",
    "Group.ReadWrite.All",
    "Directory.Read.All",
}
READ_CATALOG = {"AppCatalog.Read.All", "AppCatalog.ReadWrite.All"}
QUOTED = r"'((?:[^']|'')*)'"
POLICY_BLOCKED = "App is blocked by app permission policy. ... AppType: Private"
RSC_MISMATCH = (
    "ResourceSpecificPermissionsMismatch: the consented permission set does not "
    "match the resource-specific permissions of the app definition."
)
# Teams' middle tier failing a request of its own, in the words Graph's 400s use in public issue
# threads about installing apps (the same call went through when repeated)
CHAT_SERVICE_FAILURE = "Failed to execute Skype backend request CreateThreadRequest."
SETTINGS_STORE_FAILURE = (
    "Exception in CreateOrUpdateUserAppEntitlementForTeamsAsync. Exception(s): 'ServiceException: Failed to execute "
    "settings store request: https://settings.teams.internal.example/v1.0/settings/teams/users/appentitlements, "
    "StatusCode: 400, ReasonPhrase: Schema validation errors'"
)
# the team properties GET /teams returns as null: it populates only id, displayName, description, visibility
UNPOPULATED_TEAM = (
    "createdDateTime",
    "internalId",
    "classification",
    "specialization",
    "webUrl",
    "isArchived",
    "isMembershipLimitedToOwners",
    "memberSettings",
    "guestSettings",
    "messagingSettings",
    "funSettings",
    "discoverySettings",
    "tenantId",
    "summary",
)


class GraphFault(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def _unquote_odata(value: str) -> str:
    return value.replace("''", "'")


@dataclass(frozen=True)
class InstallScope:
    """What differs between installations in chats, teams and users' personal scope."""

    name: str  # Graph's scopeInfo/scope: groupChat | team | personal
    noun: str  # chat | team | user, in messages
    consent_roles: frozenset[str]  # one of them upgrades to a definition with resource-specific permissions
    blocked_message: str


def _consent(noun: str) -> frozenset[str]:
    """The permissions that may consent to resource-specific permissions while upgrading (the plain
    ReadWrite ones "can't be used to install apps that require consent")."""
    return frozenset({f"{INSTALLATION}ReadWriteAndConsentFor{noun}.All", f"{INSTALLATION}ManageSelectedFor{noun}.All"})


CHAT_SCOPE = InstallScope("groupChat", "chat", _consent("Chat"), POLICY_BLOCKED)
TEAM_SCOPE = InstallScope(
    "team",
    "team",
    _consent("Team"),
    "Trying to CreateTeamAppEntitlement for an App that is explicitly blocked by the tenant admin.",
)
PERSONAL_SCOPE = InstallScope("personal", "user", _consent("User"), POLICY_BLOCKED)


@dataclass
class Fault:
    status: int
    remaining: int
    match: Callable[[str, str], bool]  # (method, kind) -> applies
    retry_after: int | str | None = None
    code: str | None = None
    message: str | None = None

    def error(self) -> GraphFault:
        headers = {"Retry-After": self.retry_after} if self.retry_after is not None else {}
        default_code, default_message = {
            429: ("TooManyRequests", "Please retry again later."),
            503: ("ServiceUnavailable", "The service is temporarily unavailable."),
            401: ("InvalidAuthenticationToken", "Lifetime validation failed, the token is expired."),
        }.get(self.status, ("InternalServerError", "An internal server error occurred."))
        return GraphFault(self.status, self.code or default_code, self.message or default_message, headers)


class GraphEmulator(RequestLog):
    def __init__(
        self,
        tenant: Tenant | None = None,
        *,
        authority: TokenAuthority | None = None,
        limits: Limits | None = None,
        latency: float = 0.0,
    ) -> None:
        self.tenant = tenant or Tenant()
        self.authority = authority or TokenAuthority()
        self.limits = limits or Limits()
        self.latency = latency
        self.throttle = Throttle(self.limits)
        self.log: list[Request] = []
        self.upgrades: dict[str, int] = {}  # chat, team or user id -> successful upgrade POSTs
        self.faults: list[Fault] = []
        self.on_upgrade: Callable[[str], None] | None = None  # called with the chat, team or user id after an upgrade
        self.upgrade_listeners: list[Callable[[str, str, str], None]] = []  # (scope name, app id, installation id)
        self.after: dict[str, Callable[[Request], None]] = {}  # kind -> called after a request succeeded
        self.tokens_seen: set[str] = set()
        self.page_cap: int | None = None  # serve fewer items per page than asked (Graph may)
        self._lock = threading.Lock()
        self._server = None
        self.extra_routes: list = []  # (method, regex, handler) added by extensions

    # ---- lifecycle --------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1.0"

    def start(self, port: int = 0) -> GraphEmulator:
        self._server = serve_calls(self._handle, port)
        return self

    def stop(self) -> None:
        shutdown(self._server)
        self._server = None

    # ---- test controls ----------------------------------------------------------------------------

    def inject(
        self,
        status: int,
        count: int,
        *,
        kind: str | None = None,
        method: str | None = None,
        retry_after: int | str | None = None,
        code: str | None = None,
        message: str | None = None,
    ) -> None:
        """The next `count` matching requests fail with `status` (and Retry-After, when given)."""

        def match(m: str, k: str) -> bool:
            return (kind is None or k == kind) and (method is None or m == method)

        with self._lock:
            self.faults.append(Fault(status, count, match, retry_after, code, message))

    def requests(self, kind: str | None = None, status: int | None = None) -> list[Request]:
        with self._lock:
            return [r for r in self.log if (kind is None or r.kind == kind) and (status is None or r.status == status)]

    # ---- plumbing ---------------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        arrived, method = time.time(), handler.command
        raw_path, _, raw_query = handler.path.partition("?")
        segments = [unquote(s) for s in raw_path.split("/")[1:]]
        query = {k: v[0] for k, v in parse_qs(raw_query, keep_blank_values=True).items()}
        record = Request(arrived, method, "unknown", "other")
        status, payload, headers = 500, None, {}
        try:
            if segments[:1] == ["_emulator"]:
                status, payload = 200, self._admin(segments[1:])
            else:
                status, payload, headers = self._dispatch(handler, method, segments, query, body, record)
        except GraphFault as fault:
            status, headers = fault.status, fault.headers
            payload = {
                "error": {
                    "code": fault.code,
                    "message": fault.message,
                    "innerError": {
                        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                        "request-id": str(uuid.uuid4()),
                        "client-request-id": handler.headers.get("client-request-id", ""),
                    },
                }
            }
        record.status = status
        with self._lock:
            self.log.append(record)
        hook = self.after.get(record.kind)
        if hook and status < 300:
            hook(record)
        if self.latency:
            time.sleep(self.latency)
        data = json.dumps(payload).encode() if payload is not None else b""
        if data:
            headers = {"Content-Type": "application/json;odata.metadata=minimal", **headers}
        reply(handler, status, data, headers)

    def _admin(self, segments: list[str]) -> dict:
        if segments == ["log"]:  # for an emulator in another process (devtools.graph_process)
            return {"requests": [asdict(r) for r in self.requests()], "upgrades": dict(self.upgrades)}
        if segments == ["stats"]:
            kinds: dict[str, dict[str, int]] = {}
            for r in self.requests():
                kinds.setdefault(r.kind, {}).setdefault(str(r.status), 0)
                kinds[r.kind][str(r.status)] += 1
            buckets = {b: self.max_per_window(b) for b in {r.bucket for r in self.requests()}}
            upgraded = list(self.upgrades)
            return {
                "requests": kinds,
                "maxPerSecond": buckets,
                "upgradedChats": sum(1 for i in upgraded if i in self.tenant.chats),
                "upgradedTeams": sum(1 for i in upgraded if i in self.tenant.teams),
                "upgradedUsers": sum(1 for i in upgraded if i in self.tenant.users),
            }
        raise GraphFault(404, "NotFound", "No such emulator endpoint.")

    def _authorize(self, handler: BaseHTTPRequestHandler, allowed: set[str]) -> None:
        header = handler.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            raise GraphFault(401, "InvalidAuthenticationToken", "Access token is empty.")
        self.tokens_seen.add(header[len("Bearer ") :])
        claims = self.authority.verify(header[len("Bearer ") :], GRAPH_AUDIENCE)
        if claims is None:
            raise GraphFault(
                401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience, signature or expiry."
            )
        if allowed and not allowed & set(claims.get("roles", [])):
            raise GraphFault(
                403, "Forbidden", f"Missing role permissions on the request. API requires one of '{', '.join(sorted(allowed))}'."
            )

    def _roles(self, handler: BaseHTTPRequestHandler) -> set[str]:
        """The app roles of the request's (already verified) token."""
        token = handler.headers.get("Authorization", "")[len("Bearer ") :]
        return set((self.authority.verify(token, GRAPH_AUDIENCE) or {}).get("roles", []))

    def _begin(self, handler, record: Request, kind: str, bucket: str, roles: set[str], keys: list[tuple[str, int]]) -> None:
        """Every emulated call: classify it, check token and role, apply faults and throttling."""
        record.kind, record.bucket = kind, bucket
        self._authorize(handler, roles)
        self._admit(handler.command, kind, record, keys)

    def _admit(self, method: str, kind: str, record: Request, keys: list[tuple[str, int]]) -> None:
        with self._lock:
            fault = next((f for f in self.faults if f.remaining > 0 and f.match(method, kind)), None)
            if fault:
                fault.remaining -= 1
        if fault:
            raise fault.error()
        wait, blocked = self.throttle.admit(keys, record.t)
        if wait:
            record.throttled_by = blocked.split(":", 1)[0]
            retry_after = self.limits.retry_after if self.limits.retry_after is not None else max(1, math.ceil(wait))
            raise GraphFault(429, "TooManyRequests", "Please retry again later.", {"Retry-After": retry_after})

    def _dispatch(self, handler, method: str, segments: list[str], query: dict, body: bytes, record: Request):
        if segments[:1] != ["v1.0"]:
            raise GraphFault(400, "BadRequest", "Invalid version: only v1.0 is emulated.")
        path = segments[1:]
        for route_method, pattern, route in self.extra_routes:
            if route_method == method and (match := pattern(path)) is not None:
                return route(handler, match, query, body, record)
        lim = self.limits
        if method == "GET" and path == ["users"]:
            self._begin(handler, record, "listUsers", "directory", READ_USERS, [("directory", lim.directory_rps)])
            users = [{"id": u.id, "displayName": u.display_name, "userPrincipalName": u.upn} for u in self.tenant.users.values()]
            return self._page(users, query, "/users", max_top=999, default_top=100)
        if (
            method == "GET"
            and len(path) == 4
            and path[0] == "groups"
            and path[2:] == ["transitiveMembers", "microsoft.graph.user"]
        ):
            self._begin(handler, record, "listGroupUsers", "directory", READ_MEMBERS, [("directory", lim.directory_rps)])
            if path[1] not in self.tenant.groups:
                raise GraphFault(
                    404,
                    "Request_ResourceNotFound",
                    f"Resource '{path[1]}' does not exist or one of its queried reference-property objects are not present.",
                )
            ids = self.tenant.transitive_users(path[1])
            users = [
                {"@odata.type": "#microsoft.graph.user", "id": i, "displayName": self.tenant.users[i].display_name} for i in ids
            ]
            return self._page(
                users, query, f"/groups/{path[1]}/transitiveMembers/microsoft.graph.user", max_top=999, default_top=100
            )
        if method == "GET" and len(path) == 3 and path[0] == "users" and path[2] == "chats":
            return self._list_chats(handler, path[1], query, record)
        if len(path) >= 3 and path[0] == "chats" and path[2] == "installedApps":
            if method == "GET" and len(path) == 3:
                return self._installed_apps(handler, path[1], query, record)
            if method == "POST" and len(path) == 5 and path[4] == "upgrade":
                return self._upgrade(handler, path[1], path[3], body, record)
        if method == "GET" and path == ["teams"]:
            return self._list_teams(handler, query, record)
        if method == "GET" and len(path) == 3 and path[0] == "users" and path[2] == "joinedTeams":
            return self._joined_teams(handler, path[1], query, record)
        if len(path) >= 3 and path[0] == "teams" and path[2] == "installedApps":
            if method == "GET" and len(path) == 3:
                return self._team_installed_apps(handler, path[1], query, record)
            if method == "POST" and len(path) == 5 and path[4] == "upgrade":
                return self._upgrade_team(handler, path[1], path[3], body, record)
        if len(path) >= 4 and path[0] == "users" and path[2:4] == ["teamwork", "installedApps"]:
            if method == "GET" and len(path) == 4:
                return self._user_installed_apps(handler, path[1], query, record)
            if method == "POST" and len(path) == 6 and path[5] == "upgrade":
                return self._upgrade_user(handler, path[1], path[4], body, record)
        if method == "GET" and path == ["appCatalogs", "teamsApps"]:
            self._begin(handler, record, "listCatalog", "appCatalogs.get", READ_CATALOG, [("appCatalogs.get", lim.bucket_rps)])
            return self._catalog(query)
        raise GraphFault(400, "BadRequest", f"Resource not found for the segment '{path[-1] if path else ''}'.")

    def _page(self, items: list[dict], query: dict, path: str, *, max_top: int, default_top: int):
        try:
            top = int(query.get("$top", default_top))
        except ValueError:
            raise GraphFault(400, "BadRequest", "Invalid value for $top.") from None
        if not 1 <= top <= max_top:
            raise GraphFault(
                400, "BadRequest", f"Invalid page size specified: '{top}'. Must be between 1 and {max_top} inclusive."
            )
        if self.page_cap:
            top = min(top, self.page_cap)
        offset = 0
        if "$skiptoken" in query:
            try:
                offset = json.loads(base64.urlsafe_b64decode(query["$skiptoken"] + "==="))["o"]
            except (ValueError, KeyError, TypeError):
                raise GraphFault(400, "BadRequest", "Invalid $skiptoken.") from None
        body = {"@odata.context": f"{self.base_url}/$metadata#{path.strip('/')}", "value": items[offset : offset + top]}
        if offset + top < len(items):
            token = base64.urlsafe_b64encode(json.dumps({"o": offset + top}).encode()).decode().rstrip("=")
            params = {k: v for k, v in query.items() if k != "$skiptoken"}
            params["$skiptoken"] = token
            body["@odata.nextLink"] = f"{self.base_url}{path}?{urlencode(params)}"
        return 200, body, {}

    def _chat(self, chat_id: str) -> Chat:
        chat = self.tenant.chats.get(chat_id)
        if chat is None:
            raise GraphFault(404, "NotFound", f"Chat {chat_id} was not found.")
        return chat

    def _list_chats(self, handler, user_id: str, query: dict, record: Request):
        record.user, lim = user_id, self.limits
        self._begin(
            handler,
            record,
            "listChats",
            "teams.get",
            LIST_CHATS,
            [("teams.get", lim.bucket_rps), (f"user:{user_id}", lim.user_list_chats_rps)],
        )
        user = self.tenant.users.get(user_id)
        if user is None:
            raise GraphFault(404, "NotFound", f"User {user_id} was not found.")
        if user.chats_error:
            raise GraphFault(*user.chats_error)
        chats = self.tenant.chats_of(user_id)
        flt = query.get("$filter")
        if flt is not None:
            m = re.fullmatch(r"installedApps/any\(a:a/teamsApp/id eq " + QUOTED + r"\)", flt.strip())
            if not m:
                raise GraphFault(400, "BadRequest", f"Invalid filter clause: {flt}")
            app_id = _unquote_odata(m.group(1))
            chats = [c for c in chats if app_id in c.installed]
        items = [
            {
                "id": c.id,
                "topic": c.topic,
                "createdDateTime": "2025-03-01T10:00:00.000Z",
                "lastUpdatedDateTime": "2026-10-01T10:00:00.000Z",
                "chatType": c.chat_type,
                "webUrl": f"https://teams.microsoft.com/l/chat/{c.id}/0?tenantId={TENANT_ID}",
                "tenantId": TENANT_ID,
                "onlineMeetingInfo": None,
                "viewpoint": {"isHidden": False, "lastMessageReadDateTime": "2026-10-01T10:00:00.000Z"},
            }
            for c in chats
        ]
        return self._page(items, query, f"/users/{user_id}/chats", max_top=50, default_top=50)

    def _team(self, team_id: str) -> Team:
        """The team, unless Graph would refuse to address it: unknown (404) or archived (403)."""
        team = self.tenant.teams.get(team_id)
        if team is None:
            raise GraphFault(404, "NotFound", f"No team found with Group Id {team_id}")
        if team.archived:
            raise GraphFault(403, "Forbidden", "Entitlements cannot be retrieved because this team is archived.")
        return team

    def _teams_user(self, user_id: str) -> User:
        """The user, if they exist and have Teams (the teamwork endpoints answer 404 otherwise)."""
        user = self.tenant.users.get(user_id)
        if user is None or not user.teams_enabled:
            raise GraphFault(404, "NotFound", f"User Id '{user_id}' not found.")
        return user

    def _list_teams(self, handler, query: dict, record: Request):
        self._begin(handler, record, "listTeams", "teams.get", LIST_TEAMS, [("teams.get", self.limits.bucket_rps)])
        if "$filter" in query:
            raise GraphFault(400, "BadRequest", f"Invalid filter clause: {query['$filter']}")
        with self.tenant.lock:
            items = [
                {
                    "id": t.id,
                    "displayName": t.display_name,
                    "description": t.description,
                    "visibility": t.visibility,
                    **dict.fromkeys(UNPOPULATED_TEAM),
                }
                for t in self.tenant.teams.values()
            ]
        return self._page(items, query, "/teams", max_top=999, default_top=100)

    def _joined_teams(self, handler, user_id: str, query: dict, record: Request):
        record.user = user_id
        self._begin(
            handler, record, "listJoinedTeams", "joinedTeams.get", LIST_TEAMS, [("joinedTeams.get", self.limits.bucket_rps)]
        )
        option = next((k for k in query if k.startswith("$")), None)
        if option:
            raise GraphFault(400, "BadRequest", f"Query option '{option}' is not allowed.")
        if user_id not in self.tenant.users:
            raise GraphFault(404, "NotFound", f"User {user_id} was not found.")
        # a user in more than 999 teams gets 999 and no nextLink (a known Graph bug)
        teams = self.tenant.joined_teams(user_id)[:999]
        items = [{"id": t.id, "displayName": t.display_name, "description": t.description} for t in teams]
        return 200, {"@odata.context": f"{self.base_url}/$metadata#teams", "value": items}, {}

    def _installation_json(self, place: Installable, app_id: str, expand: set[str]) -> dict:
        app = self.tenant.apps.get(app_id)
        version = place.installed[app_id]
        item: dict = {"id": place.installation_id(app_id)}
        if "teamsApp" in expand and app:
            item["teamsApp"] = {
                "id": app.id,
                "externalId": app.external_id,
                "displayName": app.display_name,
                "distributionMethod": app.distribution,
            }
        if "teamsAppDefinition" in expand and app:
            definition = next((d for d in app.definitions if d.version == version), None)
            item["teamsAppDefinition"] = {
                "id": definition.id if definition else "",
                "teamsAppId": app.id,
                "displayName": app.display_name,
                "version": version,
                "publishingState": definition.state if definition else "published",
            }
        return item

    def _installed_apps(self, handler, chat_id: str, query: dict, record: Request):
        record.chat, lim = chat_id, self.limits
        self._begin(
            handler,
            record,
            "getInstalledApps",
            "installedApps.get",
            READ_CHAT_APPS,
            [("installedApps.get", lim.bucket_rps), (f"chat:{chat_id}", lim.chat_rps)],
        )
        return self._installations(self._chat(chat_id), query, f"chats('{chat_id}')/installedApps")

    def _team_installed_apps(self, handler, team_id: str, query: dict, record: Request):
        record.team, lim = team_id, self.limits
        self._begin(
            handler,
            record,
            "getTeamInstalledApps",
            "installedApps.teamUser.get",
            READ_TEAM_APPS,
            [("installedApps.teamUser.get", lim.bucket_rps), (f"team:{team_id}", lim.team_rps)],
        )
        return self._installations(self._team(team_id), query, f"teams('{team_id}')/installedApps")

    def _user_installed_apps(self, handler, user_id: str, query: dict, record: Request):
        record.user = user_id
        self._begin(
            handler,
            record,
            "getUserInstalledApps",
            "installedApps.teamUser.get",
            READ_USER_APPS,
            [("installedApps.teamUser.get", self.limits.bucket_rps)],
        )
        return self._installations(self._teams_user(user_id), query, f"users('{user_id}')/teamwork/installedApps")

    def _installations(self, place: Installable, query: dict, context: str):
        """GET .../installedApps of a chat, team or user, with $expand and $filter as documented."""
        expand = {e.strip() for e in query.get("$expand", "").split(",") if e.strip()}
        if expand - {"teamsApp", "teamsAppDefinition"}:
            raise GraphFault(400, "BadRequest", f"Could not find a property named '{sorted(expand)[0]}'.")
        with self.tenant.lock:
            apps = list(place.installed)
            flt = query.get("$filter")
            if flt is not None:
                m = re.fullmatch(r"teamsApp/(id|externalId) eq " + QUOTED, flt.strip())
                if not m:
                    raise GraphFault(400, "BadRequest", f"Invalid filter clause: {flt}")
                field_name, value = m.group(1), _unquote_odata(m.group(2))
                apps = [
                    a
                    for a in apps
                    if a in self.tenant.apps
                    and (self.tenant.apps[a].id if field_name == "id" else self.tenant.apps[a].external_id) == value
                ]
            items = [self._installation_json(place, a, expand) for a in apps]
        return 200, {"@odata.context": f"{self.base_url}/$metadata#{context}", "@odata.count": len(items), "value": items}, {}

    def _upgrade(self, handler, chat_id: str, installation_id: str, body: bytes, record: Request):
        record.chat, lim = chat_id, self.limits
        self._begin(
            handler,
            record,
            "upgrade",
            "installedApps.post",
            WRITE_CHAT_APPS,
            [("installedApps.post", lim.bucket_rps), (f"chat:{chat_id}", lim.chat_rps)],
        )
        request = self._upgrade_body(handler, body)
        return self._apply_upgrade(handler, self._chat(chat_id), installation_id, request, CHAT_SCOPE)

    def _upgrade_team(self, handler, team_id: str, installation_id: str, body: bytes, record: Request):
        record.team, lim = team_id, self.limits
        self._begin(
            handler,
            record,
            "upgradeTeam",
            "installedApps.post",
            WRITE_TEAM_APPS,
            [("installedApps.post", lim.bucket_rps), (f"team:{team_id}", lim.team_rps)],
        )
        request = self._upgrade_body(handler, body)
        return self._apply_upgrade(handler, self._team(team_id), installation_id, request, TEAM_SCOPE)

    def _upgrade_user(self, handler, user_id: str, installation_id: str, body: bytes, record: Request):
        record.user = user_id
        self._begin(
            handler,
            record,
            "upgradeUser",
            "installedApps.post",
            WRITE_USER_APPS,
            [("installedApps.post", self.limits.bucket_rps)],
        )
        request = self._upgrade_body(handler, body)
        return self._apply_upgrade(handler, self._teams_user(user_id), installation_id, request, PERSONAL_SCOPE)

    def _upgrade_body(self, handler, body: bytes) -> dict:
        """The upgrade's JSON body; none at all is the same as {}."""
        if body and "application/json" not in handler.headers.get("Content-Type", ""):
            raise GraphFault(415, "UnsupportedMediaType", "Content-Type must be application/json.")
        try:
            request = json.loads(body) if body else {}
        except ValueError:
            raise GraphFault(400, "BadRequest", "Unable to read JSON request payload.") from None
        if not isinstance(request, dict):
            raise GraphFault(400, "BadRequest", "The request body must be an object.")
        return request

    def _apply_upgrade(self, handler, place: Installable, installation_id: str, request: dict, scope: InstallScope):
        """Brings the installation to the newest published version, if Graph would let this request.

        A refusal set on the chat, team or user (tenant.Refusal) answers its 400 instead of 204,
        after the upgrade when it is one that was applied all the same."""
        with self.tenant.lock:
            app_id = place.app_of(installation_id)
            if app_id is None:
                raise GraphFault(404, "NotFound", f"Installation {installation_id} was not found in {scope.noun} {place.id}.")
            app = self.tenant.apps[app_id]
            if app_id in place.blocked:
                raise GraphFault(403, "Forbidden", scope.blocked_message)
            target = app.newest_published()
            required = {(v.lower(), t.lower()) for v, t in target.permissions}
            if required and not scope.consent_roles & self._roles(handler):
                raise GraphFault(
                    403,
                    "Forbidden",
                    "Installing an app that requires resource-specific consent needs one of "
                    f"{', '.join(sorted(scope.consent_roles))}.",
                )
            consent = (request.get("consentedPermissionSet") or {}).get("resourceSpecificPermissions") or []
            given = {
                (str(p.get("permissionValue", "")).lower(), str(p.get("permissionType", "")).lower())
                for p in consent
                if isinstance(p, dict)
            }
            if given != required:
                raise GraphFault(400, "BadRequest", RSC_MISMATCH)
            refused = place.refusal if place.refusal is not None and place.refusal.take() else None
            if refused is not None and not refused.applied:
                raise GraphFault(400, "BadRequest", refused.message)
            place.installed[app_id] = target.version
            self.upgrades[place.id] = self.upgrades.get(place.id, 0) + 1
        if self.on_upgrade:
            self.on_upgrade(place.id)
        for listener in list(self.upgrade_listeners):
            listener(scope.name, app_id, installation_id)
        if refused is not None:  # applied, and then a backend failed: Graph answers the failure
            raise GraphFault(400, "BadRequest", refused.message)
        return 204, None, {}

    def _catalog(self, query: dict):
        apps = list(self.tenant.apps.values())
        flt = query.get("$filter")
        if flt is not None:
            m = re.fullmatch(r"(id|externalId|distributionMethod) eq " + QUOTED, flt.strip())
            if not m:
                raise GraphFault(400, "BadRequest", f"Invalid filter clause: {flt}")
            field_name, value = m.group(1), _unquote_odata(m.group(2))
            attr = {"id": "id", "externalId": "external_id", "distributionMethod": "distribution"}[field_name]
            apps = [a for a in apps if getattr(a, attr) == value]
        expand = query.get("$expand", "")
        if expand and not re.fullmatch(r"appDefinitions(\(.*\))?", expand):
            raise GraphFault(400, "BadRequest", f"Could not find a property named '{expand}'.")
        with self.tenant.lock:
            items = []
            for app in apps:
                item = {
                    "id": app.id,
                    "externalId": app.external_id,
                    "displayName": app.display_name,
                    "distributionMethod": app.distribution,
                }
                if expand:
                    item["appDefinitions"] = [
                        {
                            "id": d.id,
                            "teamsAppId": app.id,
                            "displayName": app.display_name,
                            "version": d.version,
                            "publishingState": d.state,
                            "lastModifiedDateTime": "2026-11-01T10:00:00Z",
                            "authorization": {
                                "requiredPermissionSet": {
                                    "resourceSpecificPermissions": [
                                        {"permissionValue": v, "permissionType": t} for v, t in d.permissions
                                    ]
                                }
                            },
                        }
                        for d in app.definitions
                        if d.listed_from <= time.time()
                    ]
                items.append(item)
        return 200, {"@odata.context": f"{self.base_url}/$metadata#appCatalogs/teamsApps", "value": items}, {}
