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
from devtools.graph_subscriptions import INSTALLERS, PUBLISHERS, Subscriptions
from shared import services
from shared.graph import segment
from shared.storage import RUNS_TABLE
from shared.tracking import Subscription, utcnow
from tests.builders import group_chats, org_app, people
from tests.conftest import Api, start_host, unreachable_storage, wait_for

CLIENT_STATE = "a-long-client-state-secret-42"


@pytest.fixture
def subs(emulator) -> Subscriptions:
    return Subscriptions(emulator)


@pytest.fixture
def auto(app_env, emulator, subs):
    """The local host with the automatic triggers configured for the apps a test watches."""
    started = []

    def start(*app_ids: str, mode: str = "auto"):
        host = start_host()
        started.append(host)
        app_env.setenv("WATCHED_APP_IDS", ",".join(app_ids))
        app_env.setenv("DISCOVERY_MODE", mode)
        app_env.setenv("NOTIFICATION_URL", f"{host.base_url}/api/notifications?code=the-function-key")
        app_env.setenv("NOTIFICATION_CLIENT_STATE", CLIENT_STATE)
        services.reset()
        return host, Api(host.base_url)

    yield start
    for host in started:
        host.stop()


class Admin:
    """A Teams admin (delegated token) publishing, approving and installing through Graph."""

    def __init__(self, emulator, identity) -> None:
        token, _ = identity.authority.issue("https://graph.microsoft.com", roles=sorted(PUBLISHERS | INSTALLERS))
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

    def install(self, chat_id: str, app_id: str) -> str:
        response = self.session.post(
            f"{self.base}/chats/{segment(chat_id)}/installedApps",
            json={"teamsApp@odata.bind": f"https://graph.microsoft.com/v1.0/appCatalogs/teamsApps/{app_id}"},
        )
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def uninstall(self, chat_id: str, installation_id: str) -> None:
        response = self.session.delete(f"{self.base}/chats/{segment(chat_id)}/installedApps/{segment(installation_id)}")
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
    response = requests.post(url, params={"validationToken": "Validation: Testing client application reachability"})
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    assert response.text == "Validation: Testing client application reachability"
    hostile = requests.post(url, params={"validationToken": "<script>alert(1)</script>"})
    assert hostile.text == "&lt;script&gt;alert(1)&lt;/script&gt;"


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b'{"value": {}}', b'{"items": []}', b'"text"'],
    ids=["not-json", "array", "value-object", "no-value", "string"],
)
def test_malformed_notification_bodies_are_400s(auto, body):
    host, _ = auto()
    response = requests.post(f"{host.base_url}/api/notifications", data=body)
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
    assert app_state(api, app.id)["registry"]["chats"] == 2

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
    assert state["registry"]["invalidatedAt"] is not None


def test_subscriptions_are_renewed_before_they_expire(auto, subs, tenant, emulator):
    app = org_app(tenant)
    host, _api = auto(app.id)
    host.fire("subscription_manager")
    [subscription] = subs.subscriptions.values()
    tracking = services.get().tracking
    soon = utcnow() + timedelta(hours=2)  # as if created 68 hours ago, on both sides
    subscription.expires = soon
    tracking.set_subscription(app.id, Subscription(subscription.id, soon, utcnow()))

    host.fire("subscription_manager")

    assert len(emulator.requests(kind="renewSubscription", status=200)) == 1
    assert subscription.expires - utcnow() > timedelta(hours=60)
    assert tracking.subscription(app.id).expires_at - utcnow() > timedelta(hours=60)  # remembered, so not renewed again
    assert len(subs.subscriptions) == 1


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
