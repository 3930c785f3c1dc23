"""Teams' backend failing behind Graph, end to end through the local host: a 400 that says a
middle-tier request failed is re-checked with a GET and retried, at most UPGRADE_MAX_ATTEMPTS
times, and every installation is upgraded exactly once; any other 400 is final after one POST."""

from __future__ import annotations

from collections import Counter

from devtools.graph_emulator import CHAT_SERVICE_FAILURE, RSC_MISMATCH, SETTINGS_STORE_FAILURE
from devtools.tenant import Refusal
from tests.support import Api, group_chats, org_app, people, personal, start_host, teams


def per_resource(emulator, kind: str, field: str = "chat") -> Counter:
    return Counter(getattr(r, field) for r in emulator.requests(kind=kind))


def test_a_backend_400_once_is_rechecked_and_retried_while_plain_400s_fail_after_one_post(api, tenant, emulator):
    app = org_app(tenant)
    chats = group_chats(tenant, people(tenant, 3), 8, {app.id: "1.0.0"})
    not_applied, applied, plain, fine = chats[:2], chats[2:4], chats[4:6], chats[6:]
    for chat in not_applied:
        chat.refusal = Refusal(CHAT_SERVICE_FAILURE)
    for chat in applied:  # the upgrade went through before the backend failed
        chat.refusal = Refusal(SETTINGS_STORE_FAILURE, applied=True)
    for chat in plain:
        chat.refusal = Refusal(RSC_MISMATCH, times=None)

    status = api.wait(api.start(teamsAppId=app.id, chatIds=[c.id for c in chats]))

    assert status["state"] == "completed"
    assert (status["counts"]["upgraded"], status["counts"]["failed"], status["counts"]["pending"]) == (6, 2, 0)
    assert emulator.upgrades == {c.id: 1 for c in not_applied + applied + fine}  # each upgraded exactly once
    posts = per_resource(emulator, "upgrade")
    assert posts == {**{c.id: 2 for c in not_applied}, **{c.id: 1 for c in applied + plain + fine}}
    gets = per_resource(emulator, "getInstalledApps")
    assert gets == {**{c.id: 2 for c in not_applied + applied}, **{c.id: 1 for c in plain + fine}}  # the re-check
    assert sorted(status["failures"], key=lambda f: f["chatId"]) == sorted(
        ({"scope": "chat", "chatId": c.id, "status": 400, "code": "BadRequest", "message": RSC_MISMATCH} for c in plain),
        key=lambda f: f["chatId"],
    )


def test_a_backend_400_on_every_attempt_fails_after_the_last_attempt_with_graphs_message(api, app_env, tenant, emulator):
    app_env.setenv("UPGRADE_MAX_ATTEMPTS", "3")
    app = org_app(tenant)
    chats = group_chats(tenant, people(tenant, 2), 2, {app.id: "1.0.0"})
    for chat in chats:
        chat.refusal = Refusal(CHAT_SERVICE_FAILURE, times=None)

    status = api.wait(api.start(teamsAppId=app.id, chatIds=[c.id for c in chats]))

    assert status["state"] == "completed"
    assert (status["counts"]["failed"], status["counts"]["upgraded"], status["counts"]["pending"]) == (2, 0, 0)
    assert {(f["chatId"], f["status"], f["code"], f["message"]) for f in status["failures"]} == {
        (c.id, 400, "BadRequest", CHAT_SERVICE_FAILURE) for c in chats
    }
    assert per_resource(emulator, "upgrade") == {c.id: 3 for c in chats}  # UPGRADE_MAX_ATTEMPTS POSTs, no more
    assert per_resource(emulator, "getInstalledApps") == {c.id: 3 for c in chats}  # a GET before each
    assert not emulator.upgrades


def test_teams_and_users_get_the_same_rule(app_env, tenant, emulator):
    app_env.setenv("UPGRADE_SCOPES", "team,personal")
    app = org_app(tenant)
    users = people(tenant, 2)
    team, plain_team = teams(tenant, users, 2, {app.id: "1.0.0"})
    user, plain_user = personal(tenant, users, {app.id: "1.0.0"})
    team.refusal = Refusal(CHAT_SERVICE_FAILURE)
    user.refusal = Refusal(SETTINGS_STORE_FAILURE, applied=True)
    plain_team.refusal = plain_user.refusal = Refusal(RSC_MISMATCH, times=None)
    host = start_host()
    try:
        api = Api(host.base_url)
        status = api.wait(api.start(teamsAppId=app.id, teamIds=[team.id, plain_team.id], userIds=users))
    finally:
        host.stop()

    assert (status["counts"]["upgraded"], status["counts"]["failed"]) == (2, 2)
    assert emulator.upgrades == {team.id: 1, user.id: 1}
    assert per_resource(emulator, "upgradeTeam", "team") == {team.id: 2, plain_team.id: 1}
    assert per_resource(emulator, "upgradeUser", "user") == {user.id: 1, plain_user.id: 1}
    assert {f.get("teamId") or f.get("userId") for f in status["failures"]} == {plain_team.id, plain_user.id}
    assert all(f["message"] == RSC_MISMATCH for f in status["failures"])
