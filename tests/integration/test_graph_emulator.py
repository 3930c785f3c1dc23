"""The Graph emulator's team and personal-scope installations: listing teams, installed apps of
teams and users, their upgrades with Graph's errors and limits, and installation change
notifications per scope. Plain HTTP against the emulator; no Azurite, no Functions host."""

from __future__ import annotations

import base64
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import requests

from devtools.graph_emulator import (
    CHAT_SERVICE_FAILURE,
    LIST_TEAMS,
    READ_CHAT_APPS,
    READ_TEAM_APPS,
    READ_USER_APPS,
    RSC_MISMATCH,
    SETTINGS_STORE_FAILURE,
    WRITE_CHAT_APPS,
    WRITE_TEAM_APPS,
    WRITE_USER_APPS,
    GraphEmulator,
)
from devtools.graph_limits import Limits
from devtools.graph_process import EmulatorProcess
from devtools.graph_subscriptions import PERSONAL_SUBSCRIBERS, Delivery, Subscriptions
from devtools.loopback import reply, serve_calls, shutdown
from devtools.tenant import CatalogApp, Refusal, Team, Tenant, User, demo_tenant

GRAPH = "https://graph.microsoft.com"
EVERYTHING = sorted(
    LIST_TEAMS | READ_CHAT_APPS | WRITE_CHAT_APPS | READ_TEAM_APPS | WRITE_TEAM_APPS | READ_USER_APPS | WRITE_USER_APPS
)
LONG = 60.0  # a throttling window no test run outlasts: bursts are bursts however slow the machine


class Graph:
    """Calls the emulator with a token holding `roles`."""

    def __init__(self, emulator: GraphEmulator, identity, roles=EVERYTHING) -> None:
        self.emulator, self.identity = emulator, identity
        self.session = requests.Session()
        self.as_roles(roles)

    def as_roles(self, roles) -> Graph:
        token, _ = self.identity.authority.issue(GRAPH, roles=sorted(roles))
        self.session.headers["Authorization"] = f"Bearer {token}"
        return self

    def get(self, path: str, **params) -> requests.Response:
        return self.session.get(f"{self.emulator.base_url}{path}", params=params)

    def post(self, path: str, body=None) -> requests.Response:
        if body is None:
            return self.session.post(f"{self.emulator.base_url}{path}")
        return self.session.post(f"{self.emulator.base_url}{path}", json=body)

    def delete(self, path: str) -> requests.Response:
        return self.session.delete(f"{self.emulator.base_url}{path}")


def apps_path(place: Team | User) -> str:
    return f"/teams/{place.id}/installedApps" if isinstance(place, Team) else f"/users/{place.id}/teamwork/installedApps"


def upgrade_path(place, app_id: str) -> str:
    if isinstance(place, Team | User):
        return f"{apps_path(place)}/{quote(place.installation_id(app_id), safe='')}/upgrade"
    return f"/chats/{quote(place.id, safe='')}/installedApps/{quote(place.installation_id(app_id), safe='')}/upgrade"


def error(response: requests.Response) -> tuple[int, str, str]:
    body = response.json()["error"]
    return response.status_code, body["code"], body["message"]


@pytest.fixture
def org(tenant: Tenant):
    """Six people, an app at 1.0.0 with 1.1.0 published, in two teams and two users' personal scope."""
    app = tenant.add_app("Contoso Tasks", versions=("1.0.0", "1.1.0"))
    other = tenant.add_app("Contoso Helpdesk", versions=("2.0.0",))
    people = [tenant.add_user().id for _ in range(6)]
    teams = [
        tenant.add_team(people[:4], installed={app.id: "1.0.0", other.id: "2.0.0"}, name="Finance"),
        tenant.add_team(people[2:], installed={app.id: "1.0.0"}, name="Sales"),
        tenant.add_team(people[4:], name="Legal"),
    ]
    for user_id in people[:2]:
        tenant.users[user_id].installed[app.id] = "1.0.0"
    return app, other, people, teams


@pytest.fixture
def graph(emulator, identity) -> Graph:
    return Graph(emulator, identity)


@pytest.fixture
def start_emulator(tenant, identity):
    """An emulator with the given limits, stopped after the test."""
    started: list[GraphEmulator] = []

    def start(**limits) -> GraphEmulator:
        started.append(GraphEmulator(tenant, authority=identity.authority, limits=Limits(**limits)).start())
        return started[-1]

    yield start
    for emulator in started:
        emulator.stop()


# ---- the tenant -------------------------------------------------------------------------------------


def test_demo_tenant_keeps_its_chats_and_adds_teams_and_personal_installs():
    tenant, app = demo_tenant()
    assert Counter(c.chat_type for c in tenant.chats.values()) == {"oneOnOne": 195, "group": 292, "meeting": 113}
    assert sum(app.id in c.installed for c in tenant.chats.values()) == 525 and len(tenant.outdated_chats(app.id)) == 478
    teams = list(tenant.teams.values())
    assert len(teams) == 40 and len({t.display_name for t in teams}) == 40
    outdated = tenant.outdated_teams(app.id)
    assert len(outdated) > 20 and any(t.installed.get(app.id) == "1.4.0" for t in teams)
    assert [t.archived for t in outdated].count(True) == 1 and [app.id in t.blocked for t in outdated].count(True) == 1
    users = list(tenant.users.values())
    without_teams = [u for u in users if not u.teams_enabled]
    assert len(without_teams) == 3 and not any(u.installed or tenant.joined_teams(u.id) for u in without_teams)
    assert len(tenant.outdated_users(app.id)) > 150 and sum(u.installed.get(app.id) == "1.4.0" for u in users) > 5
    assert sum(app.id in u.blocked for u in tenant.outdated_users(app.id)) == 2


# ---- listing teams ----------------------------------------------------------------------------------


def test_teams_are_listed_in_pages_with_only_the_basic_properties(graph, emulator, tenant, org):
    tenant.teams[org[3][1].id].archived = True
    extra = [tenant.add_team([]) for _ in range(2)]
    seen, page, url = [], graph.get("/teams", **{"$top": "2", "$select": "id,displayName"}), None
    while True:
        assert page.status_code == 200, page.text
        seen.extend(page.json()["value"])
        url = page.json().get("@odata.nextLink")
        if not url:
            break
        assert "%24top=2" in url and "%24skiptoken=" in url
        page = graph.session.get(url)
    assert [t["id"] for t in seen] == [t.id for t in [*org[3], *extra]]  # archived teams are listed too
    assert seen[0]["displayName"] == "Finance" and seen[0]["visibility"] == "private" and "description" in seen[0]
    assert seen[1]["isArchived"] is None and seen[1]["webUrl"] is None and seen[1]["tenantId"] is None
    assert [(r.kind, r.bucket, r.status) for r in emulator.requests()] == [("listTeams", "teams.get", 200)] * 3
    assert graph.get("/teams").json()["value"][4]["id"] == extra[1].id  # default page size 100
    assert error(graph.get("/teams", **{"$filter": "startswith(displayName, 'F')"}))[:2] == (400, "BadRequest")
    assert error(graph.get("/teams", **{"$top": "1000"}))[0] == 400


def test_joined_teams_are_the_direct_memberships_without_query_options(graph, emulator, org):
    _, _, people, teams = org
    response = graph.get(f"/users/{people[3]}/joinedTeams")
    assert response.status_code == 200 and "@odata.nextLink" not in response.json()
    assert response.json()["value"] == [{"id": t.id, "displayName": t.display_name, "description": None} for t in teams[:2]]
    assert graph.get(f"/users/{people[0]}/joinedTeams").json()["value"] == [
        {"id": teams[0].id, "displayName": "Finance", "description": None}
    ]
    assert error(graph.get(f"/users/{people[0]}/joinedTeams", **{"$top": "1"})) == (
        400,
        "BadRequest",
        "Query option '$top' is not allowed.",
    )
    assert error(graph.get("/users/00000000-0000-4000-8000-000000000000/joinedTeams"))[:2] == (404, "NotFound")
    assert {(r.kind, r.bucket) for r in emulator.requests()} == {("listJoinedTeams", "joinedTeams.get")}


def test_a_missing_role_is_a_403_naming_the_roles_the_api_accepts(graph, org):
    app, _, people, teams = org
    graph.as_roles(["TeamsAppInstallation.ReadWriteForChat.All", "Chat.ReadBasic.All"])
    expected = {
        "/teams": LIST_TEAMS,
        apps_path(teams[0]): READ_TEAM_APPS,
        apps_path(graph.emulator.tenant.users[people[0]]): READ_USER_APPS,
    }
    for path, roles in expected.items():
        assert error(graph.get(path)) == (
            403,
            "Forbidden",
            f"Missing role permissions on the request. API requires one of '{', '.join(sorted(roles))}'.",
        )
    graph.as_roles(["TeamsAppInstallation.ReadForTeam.All", "TeamsAppInstallation.ReadForUser.All"])  # reading, not upgrading
    assert error(graph.post(upgrade_path(teams[0], app.id), {}))[2].endswith(f"'{', '.join(sorted(WRITE_TEAM_APPS))}'.")
    user = graph.emulator.tenant.users[people[0]]
    assert error(graph.post(upgrade_path(user, app.id), {}))[2].endswith(f"'{', '.join(sorted(WRITE_USER_APPS))}'.")


# ---- installed apps ---------------------------------------------------------------------------------


@pytest.mark.parametrize("scope", ["team", "user"])
def test_installed_apps_of_a_team_or_user_have_the_chat_shape(scope, graph, emulator, tenant, org):
    app, other, people, teams = org
    place = teams[0] if scope == "team" else tenant.users[people[0]]
    tenant.users[people[0]].installed[other.id] = "2.0.0"
    everything = graph.get(apps_path(place))
    assert everything.status_code == 200 and everything.json()["@odata.count"] == 2
    assert everything.json()["value"] == [{"id": place.installation_id(app.id)}, {"id": place.installation_id(other.id)}]
    response = graph.get(apps_path(place), **{"$expand": "teamsApp,teamsAppDefinition", "$filter": f"teamsApp/id eq '{app.id}'"})
    body = response.json()
    context = f"teams('{place.id}')/installedApps" if scope == "team" else f"users('{place.id}')/teamwork/installedApps"
    assert body["@odata.context"].endswith(f"/$metadata#{context}") and body["@odata.count"] == 1
    [item] = body["value"]
    assert base64.b64decode(item["id"], validate=True).decode() == f"{place.id}##{app.id}" and len(item["id"]) % 4 == 0
    assert item["teamsApp"] == {
        "id": app.id,
        "externalId": app.external_id,
        "displayName": "Contoso Tasks",
        "distributionMethod": "organization",
    }
    assert item["teamsAppDefinition"]["version"] == "1.0.0"
    assert item["teamsAppDefinition"]["publishingState"] == "published"
    by_manifest = graph.get(apps_path(place), **{"$filter": f"teamsApp/externalId eq '{other.external_id}'"}).json()
    assert by_manifest["value"] == [{"id": place.installation_id(other.id)}]
    bad = graph.get(apps_path(place), **{"$expand": "teamsApp", "$filter": "teamsApp/displayName eq 'x'"})
    assert error(bad)[:2] == (400, "BadRequest")  # the 4th request: a 5th on a team within a second would be a 429
    kind = "getTeamInstalledApps" if scope == "team" else "getUserInstalledApps"
    assert {(r.kind, r.bucket, getattr(r, scope)) for r in emulator.requests()} == {
        (kind, "installedApps.teamUser.get", place.id)
    }


# ---- upgrades -------------------------------------------------------------------------------------


def test_upgrades_of_teams_and_users_apply_the_newest_version(graph, emulator, tenant, org):
    app, other, people, teams = org
    user = tenant.users[people[0]]
    called: list[str] = []
    emulator.on_upgrade = called.append
    assert graph.post(upgrade_path(teams[0], app.id), {}).status_code == 204
    assert graph.post(upgrade_path(user, app.id)).status_code == 204  # no body at all, as the personal doc's Example 1
    assert teams[0].installed == {app.id: "1.1.0", other.id: "2.0.0"} and user.installed == {app.id: "1.1.0"}
    assert teams[1].installed[app.id] == "1.0.0" and tenant.outdated_teams(app.id) == [teams[1]]
    assert emulator.upgrades == {teams[0].id: 1, user.id: 1} and called == [teams[0].id, user.id]
    assert [(r.kind, r.bucket, r.status) for r in emulator.requests()] == [
        ("upgradeTeam", "installedApps.post", 204),
        ("upgradeUser", "installedApps.post", 204),
    ]
    stats = graph.session.get(emulator.base_url.replace("/v1.0", "/_emulator/stats")).json()
    assert (stats["upgradedChats"], stats["upgradedTeams"], stats["upgradedUsers"]) == (0, 1, 1)
    unknown = base64.b64encode(f"{teams[0].id}##{teams[1].id}".encode()).decode()
    assert error(graph.post(f"{apps_path(teams[0])}/{quote(unknown, safe='')}/upgrade", {}))[:2] == (404, "NotFound")


def test_an_archived_team_is_forbidden_to_read_and_to_upgrade(graph, emulator, org):
    app, _, _, teams = org
    teams[0].archived = True
    archived = (403, "Forbidden", "Entitlements cannot be retrieved because this team is archived.")
    assert error(graph.get(apps_path(teams[0]))) == archived
    assert error(graph.post(upgrade_path(teams[0], app.id), {})) == archived
    assert teams[0].installed[app.id] == "1.0.0" and not emulator.upgrades
    assert error(graph.get("/teams/00000000-0000-4000-8000-000000000000/installedApps"))[:2] == (404, "NotFound")


def test_blocked_apps_are_403_with_graphs_texts(graph, emulator, tenant, org):
    app, _, people, teams = org
    user = tenant.users[people[0]]
    teams[0].blocked.add(app.id)
    user.blocked.add(app.id)
    assert error(graph.post(upgrade_path(teams[0], app.id), {})) == (
        403,
        "Forbidden",
        "Trying to CreateTeamAppEntitlement for an App that is explicitly blocked by the tenant admin.",
    )
    assert error(graph.post(upgrade_path(user, app.id), {})) == (
        403,
        "Forbidden",
        "App is blocked by app permission policy. ... AppType: Private",
    )
    assert not emulator.upgrades


def test_a_user_without_teams_is_not_found(graph, tenant, org):
    app, _, people, _ = org
    user = tenant.users[people[1]]
    user.teams_enabled = False
    not_found = (404, "NotFound", f"User Id '{user.id}' not found.")
    assert error(graph.get(apps_path(user))) == not_found
    assert error(graph.post(upgrade_path(user, app.id), {})) == not_found
    assert error(graph.get("/users/nobody/teamwork/installedApps")) == (404, "NotFound", "User Id 'nobody' not found.")


@pytest.mark.parametrize("scope", ["team", "user"])
def test_resource_specific_consent_needs_the_consent_role_and_the_same_set(scope, graph, emulator, tenant, org):
    app, _, people, teams = org
    permissions = [("TeamsActivity.Send.User", "application"), ("ChannelMeeting.ReadBasic.Group", "delegated")]
    tenant.publish(app.id, "1.2.0", permissions=permissions)
    place = teams[0] if scope == "team" else tenant.users[people[0]]
    write, noun = {"team": (WRITE_TEAM_APPS, "Team"), "user": (WRITE_USER_APPS, "User")}[scope]
    consent = {f"TeamsAppInstallation.ReadWriteAndConsentFor{noun}.All", f"TeamsAppInstallation.ManageSelectedFor{noun}.All"}
    graph.as_roles(write - consent)
    assert error(graph.post(upgrade_path(place, app.id), {})) == (
        403,
        "Forbidden",
        f"Installing an app that requires resource-specific consent needs one of {', '.join(sorted(consent))}.",
    )
    graph.as_roles([f"TeamsAppInstallation.ManageSelectedFor{noun}.All"])  # either of the two
    status, code, message = error(graph.post(upgrade_path(place, app.id), {}))
    assert (status, code) == (400, "BadRequest") and message.startswith("ResourceSpecificPermissionsMismatch")
    consented = {
        "consentedPermissionSet": {
            "resourceSpecificPermissions": [
                {"permissionValue": "TeamsActivity.Send.User", "permissionType": "Application"},
                {"permissionValue": "ChannelMeeting.ReadBasic.Group", "permissionType": "Delegated"},
            ]
        }
    }
    assert graph.post(upgrade_path(place, app.id), consented).status_code == 204
    assert place.installed[app.id] == "1.2.0" and emulator.upgrades == {place.id: 1}


def graph_error(response: requests.Response) -> dict:
    """Graph's error object, checked for the documented shape."""
    body = response.json()
    assert set(body) == {"error"} and {"code", "message", "innerError"} <= set(body["error"])
    assert {"date", "request-id", "client-request-id"} <= set(body["error"]["innerError"])
    return body["error"]


@pytest.mark.parametrize("scope", ["team", "user"])
def test_a_failing_teams_backend_answers_400_as_often_as_set_then_the_upgrade_goes_through(scope, graph, emulator, tenant, org):
    app, _, people, teams = org
    place = teams[0] if scope == "team" else tenant.users[people[0]]
    place.refusal = Refusal(CHAT_SERVICE_FAILURE, times=2)
    for _ in range(2):
        refused = graph.post(upgrade_path(place, app.id), {})
        assert refused.status_code == 400
        assert {k: graph_error(refused)[k] for k in ("code", "message")} == {
            "code": "BadRequest",
            "message": CHAT_SERVICE_FAILURE,
        }
        assert place.installed[app.id] == "1.0.0" and not emulator.upgrades  # not applied
    assert graph.post(upgrade_path(place, app.id), {}).status_code == 204
    assert place.installed[app.id] == "1.1.0" and emulator.upgrades == {place.id: 1}


def test_a_backend_failure_after_the_upgrade_was_applied_answers_400_all_the_same(start_emulator, identity, tenant, org):
    app, _, people, _ = org
    emulator = start_emulator(chat_rps=10)  # the GET right after the POST on the same chat
    graph = Graph(emulator, identity)
    chat = tenant.add_chat("group", people[:3], installed={app.id: "1.0.0"})
    chat.refusal = Refusal(SETTINGS_STORE_FAILURE, applied=True)
    upgraded: list[str] = []
    emulator.on_upgrade = upgraded.append
    refused = graph.post(upgrade_path(chat, app.id), {})
    assert refused.status_code == 400 and graph_error(refused)["message"] == SETTINGS_STORE_FAILURE
    assert chat.installed[app.id] == "1.1.0" and emulator.upgrades == {chat.id: 1} and upgraded == [chat.id]
    found = graph.get(f"/chats/{quote(chat.id, safe='')}/installedApps", **{"$expand": "teamsAppDefinition"}).json()
    assert [i["teamsAppDefinition"]["version"] for i in found["value"]] == ["1.1.0"]
    assert graph.post(upgrade_path(chat, app.id), {}).status_code == 204  # the refusal was used up
    assert emulator.upgrades == {chat.id: 2}


def test_a_plain_400_is_answered_every_time_and_nothing_is_upgraded(graph, emulator, org):
    app, _, _, teams = org
    teams[0].refusal = Refusal(RSC_MISMATCH, times=None)
    for _ in range(3):
        refused = graph.post(upgrade_path(teams[0], app.id), {})
        assert refused.status_code == 400 and graph_error(refused)["message"] == RSC_MISMATCH
    assert teams[0].installed[app.id] == "1.0.0" and not emulator.upgrades


# ---- limits ---------------------------------------------------------------------------------------


def test_chat_team_and_user_upgrades_share_one_post_bucket(start_emulator, identity, tenant, org):
    app, _, people, teams = org
    chat = tenant.add_chat("group", people[:3], installed={app.id: "1.0.0"})
    emulator = start_emulator(bucket_rps=3, retry_after=7, window=LONG)
    graph = Graph(emulator, identity)
    user, other_user = tenant.users[people[0]], tenant.users[people[1]]
    assert [graph.post(upgrade_path(p, app.id), {}).status_code for p in (chat, teams[0], user)] == [204] * 3
    throttled = graph.post(upgrade_path(other_user, app.id), {})
    assert error(throttled) == (429, "TooManyRequests", "Please retry again later.")
    assert throttled.headers["Retry-After"] == "7"
    assert error(graph.post(upgrade_path(teams[1], app.id), {}))[0] == 429
    assert other_user.installed[app.id] == "1.0.0" and set(emulator.upgrades) == {chat.id, teams[0].id, user.id}
    assert {r.throttled_by for r in emulator.requests(status=429)} == {"installedApps.post"}
    assert graph.get(apps_path(teams[1])).status_code == 200  # reads are another bucket
    assert emulator.max_per_window("installedApps.post", LONG) == 3


def test_four_requests_per_second_on_one_team(start_emulator, identity, org):
    app, _, _, teams = org
    emulator = start_emulator(bucket_rps=300, retry_after=1, window=LONG)
    graph = Graph(emulator, identity)
    assert [graph.get(apps_path(teams[0])).status_code for _ in range(3)] == [200] * 3
    assert graph.post(upgrade_path(teams[0], app.id), {}).status_code == 204  # the 4th request on the team
    fifth = graph.get(apps_path(teams[0]))
    assert error(fifth)[0] == 429 and fifth.headers["Retry-After"] == "1"
    assert error(graph.post(upgrade_path(teams[0], app.id), {}))[0] == 429
    assert graph.get(apps_path(teams[1])).status_code == 200 and graph.post(upgrade_path(teams[1], app.id), {}).status_code == 204
    assert {r.throttled_by for r in emulator.requests(status=429)} == {"team"}
    assert emulator.max_per_resource_window("team", LONG) == 4
    assert emulator.min_gap("team") < 1.0 and emulator.min_chat_gap() == float("inf")


# ---- change notifications -------------------------------------------------------------------------


class Receiver:
    """A notification endpoint: answers the validation handshake, records and accepts notifications."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        self._server = serve_calls(self._handle)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/notify"

    def _handle(self, handler, body: bytes) -> None:
        token = parse_qs(urlsplit(handler.path).query).get("validationToken")
        if token:
            return reply(handler, 200, token[0].encode(), {"Content-Type": "text/plain"})
        self.received.append(json.loads(body))
        reply(handler, 202)

    def stop(self) -> None:
        shutdown(self._server)


@pytest.fixture
def receiver():
    instance = Receiver()
    yield instance
    instance.stop()


def scopes_filter(*scopes: str) -> str:
    return " or ".join(f"(scopeInfo/scope eq '{s}')" for s in scopes)


def subscribe(graph: Graph, app: CatalogApp, url: str, *, scopes=(), changes="created,deleted") -> requests.Response:
    resource = f"/appCatalogs/teamsApps/{app.id}/installations"
    if scopes:
        resource += f"?$filter={scopes_filter(*scopes)}"
    expires = (datetime.now(UTC) + timedelta(minutes=50)).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")
    body = {"changeType": changes, "notificationUrl": url, "resource": resource, "expirationDateTime": expires}
    return graph.post("/subscriptions", body)


def delivered(subs: Subscriptions, since: int) -> list[tuple[str, str]]:
    """(subscription id, change type) of the deliveries after the first `since`, once each is done."""
    deliveries: list[Delivery] = subs.deliveries[since:]
    assert all(d.done.wait(10) and d.status == 202 for d in deliveries)
    return sorted((n["subscriptionId"], n["changeType"]) for d in deliveries for n in d.body["value"])


def test_a_subscription_needs_a_read_role_for_each_scope_it_filters(graph, emulator, tenant, org, receiver):
    app = org[0]
    subs = Subscriptions(emulator)
    graph.as_roles(["TeamsAppInstallation.ReadForTeam.All"])
    assert error(subscribe(graph, app, receiver.url, scopes=("team", "personal"))) == (
        403,
        "Forbidden",
        f"Missing role permissions on the request. API requires one of '{', '.join(sorted(PERSONAL_SUBSCRIBERS))}'.",
    )
    assert subscribe(graph, app, receiver.url, scopes=("team",)).status_code == 201
    graph.as_roles(["TeamsAppInstallation.ReadForTeam.All", "TeamsAppInstallation.ReadWriteForUser.All"])
    created = subscribe(graph, app, receiver.url, scopes=("personal", "team"))
    assert created.status_code == 201, created.text
    assert subs.subscriptions[created.json()["id"]].scopes == {"team", "personal"}
    assert graph.session.get(f"{emulator.base_url}/subscriptions/{created.json()['id']}").status_code == 200
    no_filter = subscribe(graph, app, receiver.url)
    assert error(no_filter)[:2] == (403, "Forbidden") and "'TeamsAppInstallation.Read.All'" in error(no_filter)[2]
    graph.as_roles(["TeamsAppInstallation.Read.All"])
    assert subs.subscriptions[subscribe(graph, app, receiver.url).json()["id"]].scopes == {"groupChat", "team", "personal"}
    for scopes in [("team", "team"), ("channel",)]:
        assert error(subscribe(graph, app, receiver.url, scopes=scopes))[:2] == (400, "InvalidRequest")


def test_installs_and_uninstalls_notify_only_the_subscriptions_of_their_scope(graph, emulator, tenant, org, receiver):
    app, _, people, teams = org
    subs = Subscriptions(emulator)
    chat = tenant.add_chat("group", people[:3])
    subscription = {
        name: subscribe(graph, app, receiver.url, scopes=scopes).json()["id"]
        for name, scopes in [("chat", ("groupChat",)), ("team+personal", ("team", "personal")), ("all", ())]
    }
    graph.as_roles(EVERYTHING)
    bind = {"teamsApp@odata.bind": f"{GRAPH}/v1.0/appCatalogs/teamsApps/{app.id}"}

    def expect(action, *names: str, change: str) -> requests.Response:
        since = len(subs.deliveries)
        response = action()
        assert delivered(subs, since) == sorted((subscription[n], change) for n in names), response.text
        return response

    team = teams[2]
    installed = expect(lambda: graph.post(apps_path(team), bind), "team+personal", "all", change="created")
    assert installed.status_code == 201 and installed.json() == {"id": team.installation_id(app.id)}
    assert team.installed == {app.id: "1.1.0"}
    assert error(graph.post(apps_path(team), bind))[:2] == (409, "Conflict")
    user = tenant.users[people[5]]
    expect(lambda: graph.post(apps_path(user), bind), "team+personal", "all", change="created")
    expect(lambda: graph.post(f"/chats/{quote(chat.id, safe='')}/installedApps", bind), "chat", "all", change="created")
    removed = expect(
        lambda: graph.delete(f"{apps_path(user)}/{quote(user.installation_id(app.id), safe='')}"),
        "team+personal",
        "all",
        change="deleted",
    )
    assert removed.status_code == 204 and not user.installed
    expect(
        lambda: graph.delete(f"{apps_path(team)}/{quote(team.installation_id(app.id), safe='')}"),
        "team+personal",
        "all",
        change="deleted",
    )
    since = len(subs.deliveries)
    subs.notify(app.id, chat.installation_id(app.id), "deleted")  # the scope defaults to groupChat
    assert delivered(subs, since) == sorted([(subscription["chat"], "deleted"), (subscription["all"], "deleted")])
    assert sum(len(r["value"]) for r in receiver.received) == 12
    assert {r["value"][0]["resourceData"]["id"] for r in receiver.received} == {
        team.installation_id(app.id),
        user.installation_id(app.id),
        chat.installation_id(app.id),
    }
    assert "scopeInfo" not in receiver.received[0]["value"][0]


def test_team_and_personal_upgrades_notify_updated_and_chat_upgrades_do_not(graph, emulator, tenant, org, receiver):
    app, _, people, teams = org
    subs = Subscriptions(emulator)
    chat = tenant.add_chat("group", people[:3], installed={app.id: "1.0.0"})
    updates = subscribe(graph, app, receiver.url, scopes=("groupChat", "team", "personal"), changes="created,updated,deleted")
    created_only = subscribe(graph, app, receiver.url, scopes=("team",), changes="created")
    assert updates.status_code == created_only.status_code == 201
    since = len(subs.deliveries)
    assert graph.post(upgrade_path(teams[0], app.id), {}).status_code == 204
    assert delivered(subs, since) == [(updates.json()["id"], "updated")]
    assert subs.deliveries[since].body["value"][0]["resourceData"]["id"] == teams[0].installation_id(app.id)
    since = len(subs.deliveries)
    assert graph.post(upgrade_path(tenant.users[people[0]], app.id)).status_code == 204
    assert delivered(subs, since) == [(updates.json()["id"], "updated")]
    since = len(subs.deliveries)
    assert graph.post(upgrade_path(chat, app.id), {}).status_code == 204
    assert chat.installed[app.id] == "1.1.0" and subs.deliveries[since:] == []


# ---- in a process of its own (the benchmark's) ------------------------------------------------------


def test_the_emulator_in_a_process_of_its_own_serves_a_copy_of_the_tenant_and_hands_over_its_log(tenant, identity, org):
    app, _other, _people, teams = org
    emulator = EmulatorProcess(tenant, authority=identity.authority, limits=Limits(), latency=0.0).start()
    try:
        graph = Graph(emulator, identity)
        found = graph.get(apps_path(teams[0]), **{"$expand": "teamsAppDefinition", "$filter": f"teamsApp/id eq '{app.id}'"})
        assert found.json()["value"][0]["teamsAppDefinition"]["version"] == "1.0.0"
        assert graph.post(upgrade_path(teams[0], app.id), {}).status_code == 204
        with pytest.raises(RuntimeError):
            emulator.requests()  # read once it stops: the log is the other process's until then
    finally:
        emulator.stop()
    assert [(r.kind, r.status, r.team) for r in emulator.requests()] == [
        ("getTeamInstalledApps", 200, teams[0].id),
        ("upgradeTeam", 204, teams[0].id),
    ]
    assert emulator.upgrades == {teams[0].id: 1}
    assert emulator.max_per_resource_window("team") == 2
    assert teams[0].installed[app.id] == "1.0.0"  # the upgrade happened in the copy
