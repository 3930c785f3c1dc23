"""A run whose identity lacks a Graph permission fails at once, naming the permission, instead of
failing every target one 403 at a time; an app blocked by policy in some chats is not that."""

from __future__ import annotations

import pytest

from devtools.identity import DEFAULT_ROLES
from tests.support import graph_says_a_role_is_missing, group_chats, org_app, people, teams

CHAT_WRITE = "TeamsAppInstallation.ReadWriteForChat.All"


@pytest.fixture
def roles(identity):
    """The app roles of the tokens issued in this test (restored afterwards)."""
    granted = identity.authority.roles
    yield granted
    granted[:] = list(DEFAULT_ROLES)


@pytest.fixture
def chat_and_team(app_env):
    app_env.setenv("UPGRADE_SCOPES", "chat,team")  # before the host starts (listed before `api`)


def _graph_calls(emulator, *kinds: str) -> list:
    return [r for r in emulator.requests() if r.kind in kinds]


def test_a_token_without_the_upgrade_permission_fails_the_run_before_any_installation_request(
    chat_and_team, api, roles, tenant, emulator
):
    roles.remove(CHAT_WRITE)
    app = org_app(tenant)
    users = people(tenant, 2)
    chats = group_chats(tenant, users, 30, {app.id: "1.0.0"})
    team_list = teams(tenant, users, 2, {app.id: "1.0.0"})

    status = api.wait(api.start(teamsAppId=app.id, chatIds=[c.id for c in chats], teamIds=[t.id for t in team_list]))

    assert status["state"] == "failed"
    assert status["error"]["code"] == "missingPermissions"
    message = status["error"]["message"]
    assert "upgrading chat installations needs one of TeamsAppInstallation.ReadWriteForChat.All" in message
    assert "team" not in message.split("Grant")[0].replace("TeamsAppInstallation", "")  # the team scope has its permission
    assert _graph_calls(emulator, "getInstalledApps", "getTeamInstalledApps", "upgrade", "upgradeTeam") == []
    assert status["counts"]["targets"] == 0 and status["counts"]["pending"] == 0


def test_a_token_holding_only_a_self_permission_fails_the_run_before_any_installation_request(api, roles, tenant, emulator):
    # Graph's least privileged permission for the upgrade, but it lets a Teams app upgrade itself only
    roles.remove(CHAT_WRITE)
    roles.append("TeamsAppInstallation.ReadWriteSelfForChat.All")
    app = org_app(tenant)
    chats = group_chats(tenant, people(tenant, 2), 5, {app.id: "1.0.0"})

    status = api.wait(api.start(teamsAppId=app.id, chatIds=[c.id for c in chats]))

    assert status["state"] == "failed" and status["error"]["code"] == "missingPermissions"
    assert "upgrading chat installations needs one of TeamsAppInstallation.ReadWriteForChat.All" in status["error"]["message"]
    assert _graph_calls(emulator, "getInstalledApps", "upgrade") == []
    assert status["counts"]["targets"] == 0 and emulator.upgrades == {}


def test_a_token_holding_only_a_manage_selected_permission_upgrades(api, roles, tenant, emulator):
    roles.remove(CHAT_WRITE)
    roles.append("TeamsAppInstallation.ManageSelectedForChat.All")
    app = org_app(tenant)
    chats = group_chats(tenant, people(tenant, 2), 3, {app.id: "1.0.0"})

    status = api.wait(api.start(teamsAppId=app.id, chatIds=[c.id for c in chats]))

    assert status["state"] == "completed" and status["counts"]["upgraded"] == 3
    assert emulator.upgrades == {c.id: 1 for c in chats}


def test_a_403_saying_a_role_is_missing_stops_the_run_after_a_handful_of_requests(api, tenant, emulator):
    graph_says_a_role_is_missing(emulator)
    app = org_app(tenant)
    chats = group_chats(tenant, people(tenant, 2), 200, {app.id: "1.0.0"})

    status = api.wait(api.start(teamsAppId=app.id, chatIds=[c.id for c in chats]), timeout=90)

    assert status["state"] == "failed" and status["error"]["code"] == "missingPermissions"
    assert "TeamsAppInstallation.ReadForChat.All" in status["error"]["message"]  # Graph's own list
    denied = [r for r in emulator.requests(kind="getInstalledApps") if r.status == 403]
    assert 1 <= len(denied) <= 10
    assert len(emulator.requests(kind="getInstalledApps")) <= 12
    counts = status["counts"]
    assert counts["failed"] == 0 and counts["pending"] == 0 and counts["cancelled"] == 200
    assert emulator.upgrades == {}


def test_discovery_without_the_chat_list_permission_fails_fast(api, roles, tenant, emulator):
    roles.remove("Chat.ReadBasic.All")
    app = org_app(tenant)
    users = people(tenant, 40)
    for user in users:
        group_chats(tenant, [user, users[0]], 1, {app.id: "1.0.0"})

    status = api.wait(api.start(teamsAppId=app.id, scopes=["chat"]), timeout=90)

    assert status["state"] == "failed" and status["error"]["code"] == "missingPermissions"
    assert "Chat.ReadBasic.All" in status["error"]["message"]
    assert len(emulator.requests(kind="listChats")) <= 10
    assert emulator.upgrades == {}


def test_a_retry_after_the_permission_is_granted_upgrades_what_was_cancelled(api, tenant, emulator):
    graph_says_a_role_is_missing(emulator)
    app = org_app(tenant)
    chats = group_chats(tenant, people(tenant, 2), 12, {app.id: "1.0.0"})
    failed = api.wait(api.start(teamsAppId=app.id, chatIds=[c.id for c in chats]))
    assert failed["error"]["code"] == "missingPermissions"

    emulator.faults.clear()  # granted: Graph lets the requests through
    response = api.act(failed["runId"], "retry")
    assert response.status_code == 202, response.text
    status = api.wait(response.json()["runId"])

    assert status["state"] == "completed" and status["counts"]["upgraded"] == 12


def test_an_app_blocked_by_policy_in_some_chats_fails_only_those_chats(api, tenant, emulator):
    app = org_app(tenant)
    chats = group_chats(tenant, people(tenant, 2), 8, {app.id: "1.0.0"})
    for chat in chats[:3]:
        chat.blocked.add(app.id)

    status = api.wait(api.start(teamsAppId=app.id, chatIds=[c.id for c in chats]))

    assert status["state"] == "completed" and status["error"] is None
    assert (status["counts"]["failed"], status["counts"]["upgraded"]) == (3, 5)
