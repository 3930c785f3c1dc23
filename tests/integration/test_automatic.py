"""Automatic upgrades: the catalog watcher, Graph change notifications into the installation
registry, the subscription manager and the discovery modes, against the Graph emulator extended
with catalog publishing, review, installs, subscriptions and notification delivery."""

from __future__ import annotations

import io
import json
import threading
import zipfile
from datetime import timedelta

import pytest
import requests
from azure.data.tables import TableServiceClient

from devtools.funchost import LocalHost
from devtools.graph_emulator import WRITE_TEAM_APPS, WRITE_USER_APPS
from devtools.graph_subscriptions import INSTALLERS, PUBLISHERS, Subscriptions
from shared import bootstrap
from shared.foundation.storage import RUNS_TABLE
from shared.graph.client import segment
from shared.stores.apps import Subscription, utcnow
from tests.support import Api, group_chats, org_app, people, start_host, unreachable_storage, wait_for

CLIENT_STATE = "a-long-client-state-secret-42"


@pytest.fixture
def subs(emulator) -> Subscriptions:
    return Subscriptions(emulator)


@pytest.fixture
def auto(app_env, emulator, subs):
    """The local host with the automatic triggers configured for the apps a test watches."""
    started = []

    def start(*app_ids: str, mode: str = "auto", scopes: str = "chat"):
        host = start_host()
        started.append(host)
        app_env.setenv("WATCHED_APP_IDS", ",".join(app_ids))
        app_env.setenv("DISCOVERY_MODE", mode)
        app_env.setenv("UPGRADE_SCOPES", scopes)
        app_env.setenv("NOTIFICATION_URL", f"{host.base_url}/api/notifications?code=the-function-key")
        app_env.setenv("NOTIFICATION_CLIENT_STATE", CLIENT_STATE)
        bootstrap.reset()
        return host, Api(host.base_url)

    yield start
    for host in started:
        host.stop()


class Admin:
    """A Teams admin (delegated token) publishing, approving and installing through Graph."""

    def __init__(self, emulator, identity) -> None:
        roles = PUBLISHERS | INSTALLERS | WRITE_TEAM_APPS | WRITE_USER_APPS
        token, _ = identity.authority.issue("https://graph.microsoft.com", roles=sorted(roles))
        self.base = emulator.base_url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def publish(self, app_id: str, version: str, *, review: bool = False) -> requests.Response:
        package = io.BytesIO()
        with zipfile.ZipFile(package, "w") as archive:
            archive.writestr("manifest.json", json.dumps({"version": version, "id": "manifest-id"}))
        params = {"requiresReview": "true"} if review else {}
        response = self.session.post(
            f"{self.base}/appCatalogs/teamsApps/{app_id}/appDefinitions",
            params=params,
            data=package.getvalue(),
            headers={"Content-Type": "application/zip"},
        )
        assert response.status_code in (201, 204), response.text
        return response

    def approve(self, app_id: str, definition_id: str) -> None:
        response = self.session.patch(
            f"{self.base}/appCatalogs/teamsApps/{app_id}/appDefinitions/{definition_id}", json={"publishingState": "published"}
        )
        assert response.status_code == 200, response.text

    def install(self, chat_id: str, app_id: str, *, collection: str = "chats/{id}/installedApps") -> str:
        response = self.session.post(
            f"{self.base}/{collection.format(id=segment(chat_id))}",
            json={"teamsApp@odata.bind": f"https://graph.microsoft.com/v1.0/appCatalogs/teamsApps/{app_id}"},
        )
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def uninstall(self, chat_id: str, installation_id: str, *, collection: str = "chats/{id}/installedApps") -> None:
        response = self.session.delete(f"{self.base}/{collection.format(id=segment(chat_id))}/{segment(installation_id)}")
        assert response.status_code == 204, response.text


@pytest.fixture
def admin(emulator, identity) -> Admin:
    return Admin(emulator, identity)


def app_state(api: Api, app_id: str) -> dict:
    apps = api.session.get(f"{api.base_url}/api/apps").json()["apps"]
    return next((a for a in apps if a["teamsAppId"] == app_id), {})


def watch(host: LocalHost, caplog) -> None:
    """Fires the catalog watcher; it logs (rather than raises) a failed check, so look for that too."""
    assert host.fire("catalog_watcher")
    assert "Checking app" not in caplog.text


def run_rows(azurite) -> list[dict]:
    table = TableServiceClient.from_connection_string(azurite.connection_string).get_table_client(RUNS_TABLE)
    return list(table.query_entities("RowKey eq 'run'"))


# ---- catalog watcher -------------------------------------------------------------------------------


def test_watcher_records_first_sight_then_upgrades_a_new_version_once(auto, admin, tenant, emulator, azurite):
    app = org_app(tenant, versions=("1.0.0",))
    chats = group_chats(tenant, people(tenant, 3), 3, {app.id: "1.0.0"})
    host, api = auto(app.id)

    assert host.fire("catalog_watcher")
    assert app_state(api, app.id)["seenVersion"] == "1.0.0"
    assert run_rows(azurite) == []  # first sight: no run

    admin.publish(app.id, "1.1.0")
    assert host.fire("catalog_watcher")
    run_id = app_state(api, app.id)["lastRunId"]
    status = api.wait(run_id)
    assert status["targetVersion"] == "1.1.0" and status["counts"]["upgraded"] == 3
    assert all(c.installed[app.id] == "1.1.0" for c in chats)

    for _ in range(2):
        assert host.fire("catalog_watcher")
    assert len(run_rows(azurite)) == 1
    assert emulator.upgrades == {c.id: 1 for c in chats}


def test_a_version_approved_after_review_is_upgraded(auto, admin, tenant, caplog):
    app = org_app(tenant, versions=("1.0.0",))
    chat = group_chats(tenant, people(tenant, 2), 1, {app.id: "1.0.0"})[0]
    host, api = auto(app.id)
    watch(host, caplog)

    submitted = admin.publish(app.id, "1.1.0", review=True).json()
    watch(host, caplog)
    state = app_state(api, app.id)
    assert (state["seenVersion"], state["lastRunId"]) == ("1.0.0", None)  # awaiting review: not published yet

    admin.approve(app.id, submitted["id"])
    watch(host, caplog)
    status = api.wait(app_state(api, app.id)["lastRunId"])
    assert status["counts"]["upgraded"] == 1 and chat.installed[app.id] == "1.1.0"


def test_concurrent_watchers_start_one_run(auto, admin, tenant, azurite, caplog):
    app = org_app(tenant, versions=("1.0.0",))
    group_chats(tenant, people(tenant, 2), 2, {app.id: "1.0.0"})
    host, api = auto(app.id)
    watch(host, caplog)
    admin.publish(app.id, "2.0.0")

    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(host.fire("catalog_watcher"))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results == [True] * 4
    assert "Checking app" not in caplog.text  # no check failed; only one created the run
    assert len(run_rows(azurite)) == 1
    assert api.wait(app_state(api, app.id)["lastRunId"])["counts"]["upgraded"] == 2


def test_a_pipeline_run_keeps_the_watcher_from_starting_another(auto, admin, tenant, azurite, caplog):
    app = org_app(tenant, versions=("1.0.0",))
    group_chats(tenant, people(tenant, 2), 2, {app.id: "1.0.0"})
    host, api = auto(app.id)
    watch(host, caplog)
    admin.publish(app.id, "1.2.0")

    pipeline_run = api.start(teamsAppId=app.id, version="1.2.0")  # the pipeline's fast path
    api.wait(pipeline_run)
    watch(host, caplog)

    assert len(run_rows(azurite)) == 1
    state = app_state(api, app.id)
    assert (state["seenVersion"], state["lastRunId"]) == ("1.2.0", pipeline_run)


# ---- notification endpoint --------------------------------------------------------------------------


def test_validation_handshake_echoes_the_decoded_token_as_text(auto):
    host, _api = auto()
    url = f"{host.base_url}/api/notifications"
    response = requests.post(url, params={"validationToken": "Validation: Testing client application reachability"}, timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    assert response.text == "Validation: Testing client application reachability"
    hostile = requests.post(url, params={"validationToken": "<script>alert(1)</script>"}, timeout=30)
    assert hostile.text == "&lt;script&gt;alert(1)&lt;/script&gt;"


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b'{"value": {}}', b'{"items": []}', b'"text"'],
    ids=["not-json", "array", "value-object", "no-value", "string"],
)
def test_malformed_notification_bodies_are_400s(auto, body):
    host, _ = auto()
    response = requests.post(f"{host.base_url}/api/notifications", data=body, timeout=30)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalidNotification"


def test_installations_reach_the_registry_and_a_registry_run_lists_no_chats(auto, admin, subs, tenant, emulator):
    app = org_app(tenant)
    users = people(tenant, 4)
    chats = [tenant.add_chat("group", users, installed={}) for _ in range(3)]
    host, api = auto(app.id, mode="registry")
    assert host.fire("subscription_manager")
    [subscription] = subs.subscriptions.values()
    assert subscription.resource == f"/appCatalogs/teamsApps/{app.id}/installations?$filter=(scopeInfo/scope eq 'groupChat')"
    assert subscription.client_state == CLIENT_STATE and subscription.lifecycle_url
    assert len(subs.handshakes) == 2 and all(status == 200 and seconds < 10 for _, status, seconds in subs.handshakes)

    installations = {chat.id: admin.install(chat.id, app.id) for chat in chats}
    admin.uninstall(chats[2].id, installations[chats[2].id])
    for delivery in subs.deliveries:
        assert delivery.done.wait(10)
        assert delivery.status == 202 and delivery.seconds < 3
    wait_for(lambda: app_state(api, app.id)["registry"]["events"] == 4)
    assert app_state(api, app.id)["registry"]["installations"] == {"chat": 2, "team": 0, "personal": 0}

    for chat in chats[:2]:  # installed at 1.1.0 (the newest); put them back to an old version
        chat.installed[app.id] = "1.0.0"
    status = api.wait(api.start(teamsAppId=app.id))
    assert status["discovery"]["mode"] == "registry"
    assert status["counts"]["upgraded"] == 2
    assert not emulator.requests(kind="listChats") and not emulator.requests(kind="listUsers")


def test_a_wrong_client_state_is_dropped(auto, subs, tenant, emulator, caplog):
    app = org_app(tenant)
    chat = tenant.add_chat("group", people(tenant, 2), installed={app.id: "1.0.0"})
    host, api = auto(app.id)
    host.fire("subscription_manager")
    [subscription] = subs.subscriptions.values()
    subscription.client_state = "somebody-else"  # as a forged or foreign notification would carry
    forged = subs.notify(app.id, chat.installation_id(app.id), "created")[0]
    assert forged.done.wait(10) and forged.status == 202
    assert "clientState missing or not ours" in caplog.text

    subscription.client_state = CLIENT_STATE  # then a genuine one: only it reaches the registry
    genuine = subs.notify(app.id, chat.installation_id(app.id), "created")[0]
    assert genuine.done.wait(10) and genuine.status == 202
    wait_for(lambda: app_state(api, app.id)["registry"]["events"] >= 1)
    assert app_state(api, app.id)["registry"]["events"] == 1


def test_an_unreadable_installation_id_makes_the_next_auto_run_scan(auto, subs, tenant, emulator):
    app = org_app(tenant)
    users = people(tenant, 3)
    chat = tenant.add_chat("group", users, installed={app.id: "1.0.0"})
    host, api = auto(app.id)
    host.fire("subscription_manager")
    first = api.wait(api.start(teamsAppId=app.id))  # auto: no seeded registry yet, so it scans (and seeds)
    assert first["discovery"]["mode"] == "scan" and first["counts"]["upgraded"] == 1

    chat.installed[app.id] = "1.0.0"
    second = api.wait(api.start(teamsAppId=app.id))
    assert second["discovery"]["mode"] == "registry" and second["counts"]["upgraded"] == 1
    scans = len(emulator.requests(kind="listChats"))

    delivery = subs.notify(app.id, "bm90IGEgY2hhdCBpbnN0YWxsYXRpb24=", "created")[0]  # base64 of something else
    assert delivery.done.wait(10) and delivery.status == 202
    wait_for(lambda: app_state(api, app.id)["registry"]["undecodable"] == 1)
    chat.installed[app.id] = "1.0.0"
    third = api.wait(api.start(teamsAppId=app.id))
    assert third["discovery"]["mode"] == "scan"
    assert len(emulator.requests(kind="listChats")) == scans + len(users)


# ---- subscription lifecycle --------------------------------------------------------------------------


def test_lifecycle_events_reauthorize_and_recreate(auto, subs, tenant, emulator):
    app = org_app(tenant)
    host, api = auto(app.id)
    host.fire("subscription_manager")
    [first] = subs.subscriptions.values()

    assert subs.lifecycle(first.id, "reauthorizationRequired").done.wait(10)
    wait_for(lambda: first.reauthorized == 1)

    assert subs.lifecycle(first.id, "subscriptionRemoved").done.wait(10)
    second = wait_for(lambda: next(iter(subs.subscriptions.values()), None))
    assert second.id != first.id
    state = wait_for(lambda: (s := app_state(api, app.id))["subscription"] and s["subscription"]["id"] == second.id and s)
    assert state["registry"]["scopes"]["chat"]["invalidatedAt"] is not None


def test_subscriptions_are_renewed_before_they_expire(auto, subs, tenant, emulator):
    app = org_app(tenant)
    host, _api = auto(app.id)
    host.fire("subscription_manager")
    [subscription] = subs.subscriptions.values()
    tracking = bootstrap.get().apps
    soon = utcnow() + timedelta(hours=2)  # as if created 68 hours ago, on both sides
    subscription.expires = soon
    recorded = tracking.subscription(app.id)
    tracking.set_subscription(app.id, Subscription(subscription.id, soon, utcnow(), recorded.scopes, recorded.client_state))

    host.fire("subscription_manager")

    assert len(emulator.requests(kind="renewSubscription", status=200)) == 1
    assert subscription.expires - utcnow() > timedelta(hours=60)
    assert tracking.subscription(app.id).expires_at - utcnow() > timedelta(hours=60)  # remembered, so not renewed again
    assert len(subs.subscriptions) == 1


def test_a_rotated_client_state_replaces_the_subscription(auto, app_env, subs, tenant, emulator):
    app = org_app(tenant)
    host, _api = auto(app.id)
    host.fire("subscription_manager")
    [old] = subs.subscriptions.values()
    assert old.client_state == CLIENT_STATE
    assert CLIENT_STATE not in json.dumps(bootstrap.get().apps.subscription(app.id).__dict__, default=str)  # never stored

    app_env.setenv("NOTIFICATION_CLIENT_STATE", "a-new-secret-of-thirty-two-chars")
    bootstrap.reset()
    host.fire("subscription_manager")

    [new] = subs.subscriptions.values()
    assert new.id != old.id and new.client_state == "a-new-secret-of-thirty-two-chars"
    host.fire("subscription_manager")  # and it stays: nothing to replace any more
    assert [s.id for s in subs.subscriptions.values()] == [new.id]


def test_notifications_that_cannot_be_persisted_are_a_5xx_so_graph_retries(app_env):
    app_env.setenv("AzureWebJobsStorage", unreachable_storage())
    app_env.setenv("NOTIFICATION_CLIENT_STATE", CLIENT_STATE)
    host = start_host(queue_workers=None)  # HTTP only: nothing else to reach the dead storage
    try:
        item = {"subscriptionId": "s", "changeType": "created", "clientState": CLIENT_STATE, "resource": "x"}
        response = requests.post(f"{host.base_url}/api/notifications", json={"value": [item]}, timeout=60)
    finally:
        host.stop()
    assert response.status_code == 500
    assert "configurationError" not in response.text  # the storage write failed, not the settings


# ---- teams and personal scope --------------------------------------------------------------------

TEAM_APPS, USER_APPS = "teams/{id}/installedApps", "users/{id}/teamwork/installedApps"


def test_team_and_personal_installations_reach_the_registry_and_a_registry_run_lists_nothing(auto, admin, subs, tenant, emulator):
    app = org_app(tenant)
    users = people(tenant, 3)
    team_list = [tenant.add_team(users) for _ in range(2)]
    host, api = auto(app.id, mode="registry", scopes="chat,team,personal")
    assert host.fire("subscription_manager")
    [subscription] = subs.subscriptions.values()
    assert subscription.resource == (
        f"/appCatalogs/teamsApps/{app.id}/installations?$filter=(scopeInfo/scope eq 'groupChat') or "
        "(scopeInfo/scope eq 'team') or (scopeInfo/scope eq 'personal')"
    )
    assert subscription.change_types == {"created", "deleted"}  # our own team and user upgrades do not come back

    installed = {team.id: admin.install(team.id, app.id, collection=TEAM_APPS) for team in team_list}
    for user in users[:2]:
        admin.install(user, app.id, collection=USER_APPS)
    admin.uninstall(team_list[1].id, installed[team_list[1].id], collection=TEAM_APPS)
    for delivery in subs.deliveries:
        assert delivery.done.wait(10) and delivery.status == 202
    wait_for(lambda: app_state(api, app.id)["registry"]["events"] == 5)
    assert app_state(api, app.id)["registry"]["installations"] == {"chat": 0, "team": 1, "personal": 2}

    team_list[0].installed[app.id] = "1.0.0"  # installed at the newest version; put them back to an old one
    for user in users[:2]:
        tenant.users[user].installed[app.id] = "1.0.0"
    status = api.wait(api.start(teamsAppId=app.id))
    assert status["discovery"]["scopes"]["team"]["mode"] == "registry"
    assert status["countsByScope"]["team"]["upgraded"] == 1 and status["countsByScope"]["personal"]["upgraded"] == 2
    assert not emulator.requests(kind="listTeams") and not emulator.requests(kind="listUsers")
    # a basic notification's GUID does not say team or user: each was looked up where it could be
    assert {r.team for r in emulator.requests(kind="getTeamInstalledApps", status=404)} >= set(users[:2])


def test_auto_discovery_seeds_each_scope_with_a_scan_then_uses_the_registry(auto, tenant, emulator):
    app = org_app(tenant)
    users = people(tenant, 3)
    team = tenant.add_team(users, installed={app.id: "1.0.0"})
    tenant.add_team(users)  # the app is not there: not in the registry after the scan
    tenant.users[users[0]].installed[app.id] = "1.0.0"
    chat = tenant.add_chat("group", users, installed={app.id: "1.0.0"})
    host, api = auto(app.id, scopes="chat,team,personal")
    host.fire("subscription_manager")

    first = api.wait(api.start(teamsAppId=app.id))
    assert {s: v["mode"] for s, v in first["discovery"]["scopes"].items()} == {"chat": "scan", "team": "scan", "personal": "scan"}
    assert first["counts"]["upgraded"] == 3
    assert app_state(api, app.id)["registry"]["installations"] == {"chat": 1, "team": 1, "personal": 1}

    for place in (chat, team, tenant.users[users[0]]):
        place.installed[app.id] = "1.0.0"
    listed = len(emulator.requests(kind="listTeams")) + len(emulator.requests(kind="listUsers"))
    second = api.wait(api.start(teamsAppId=app.id))
    assert {s: v["mode"] for s, v in second["discovery"]["scopes"].items()} == {
        "chat": "registry",
        "team": "registry",
        "personal": "registry",
    }
    assert second["counts"]["upgraded"] == 3 and second["counts"]["targets"] == 3
    assert len(emulator.requests(kind="listTeams")) + len(emulator.requests(kind="listUsers")) == listed


def test_a_change_of_scopes_replaces_the_subscription(auto, app_env, subs, tenant, emulator):
    app = org_app(tenant)
    host, api = auto(app.id, scopes="chat")
    host.fire("subscription_manager")
    [first] = subs.subscriptions.values()
    app_env.setenv("UPGRADE_SCOPES", "chat,team")
    bootstrap.reset()

    host.fire("subscription_manager")

    [second] = subs.subscriptions.values()
    assert second.id != first.id and second.scopes == {"groupChat", "team"}
    assert len(emulator.requests(kind="deleteSubscription", status=204)) == 1
    assert app_state(api, app.id)["subscription"]["scopes"] == ["chat", "team"]


def test_the_watcher_starts_runs_over_upgrade_scopes(auto, admin, tenant, caplog):
    app = org_app(tenant, versions=("1.0.0",))
    users = people(tenant, 2)
    team = tenant.add_team(users, installed={app.id: "1.0.0"})
    host, api = auto(app.id, scopes="team,personal")
    watch(host, caplog)
    admin.publish(app.id, "1.1.0")
    watch(host, caplog)

    status = api.wait(app_state(api, app.id)["lastRunId"])
    assert status["scopes"] == ["team", "personal"]
    assert status["countsByScope"]["team"]["upgraded"] == 1 and team.installed[app.id] == "1.1.0"
