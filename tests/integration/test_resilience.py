"""Throttling, outages and terminal errors: no chat lost, none upgraded twice, every run completes."""

from __future__ import annotations

from tests.support import group_chats, org_app, people


def _setup(tenant, count=6):
    app = org_app(tenant)
    chats = group_chats(tenant, people(tenant, 3), count, {app.id: "1.0.0"})
    return app, chats


def test_429_storm_on_lookups_is_waited_out_inline(api, tenant, emulator):
    app, chats = _setup(tenant)
    emulator.inject(429, 4, kind="getInstalledApps", retry_after=1)

    status = api.wait(api.start(teamsAppId=app.id, chatIds=[c.id for c in chats]))

    assert status["counts"]["upgraded"] == 6 and status["counts"]["failed"] == 0
    assert len(emulator.requests(kind="getInstalledApps", status=429)) == 4
    assert emulator.upgrades == {c.id: 1 for c in chats}


def test_long_retry_after_reschedules_the_chats_on_the_queue(api, app_env, tenant, emulator):
    app_env.setenv("GRAPH_INLINE_RETRY_SECONDS", "0")  # any wait is "long": hand it back to the queue
    app, chats = _setup(tenant, 3)
    emulator.inject(429, 3, kind="upgrade", retry_after=2)

    status = api.wait(api.start(teamsAppId=app.id, chatIds=[c.id for c in chats]))

    assert status["counts"]["upgraded"] == 3
    assert emulator.upgrades == {c.id: 1 for c in chats}
    throttled = emulator.requests(kind="upgrade", status=429)
    retried = [r for r in emulator.requests(kind="upgrade", status=204) if r.chat in {t.chat for t in throttled}]
    assert retried and min(r.t for r in retried) - max(t.t for t in throttled) >= 2.0  # honoured Retry-After


def test_503_on_upgrade_rechecks_before_posting_again(api, tenant, emulator):
    app, chats = _setup(tenant, 2)
    emulator.inject(503, 1, kind="upgrade")

    status = api.wait(api.start(teamsAppId=app.id, chatIds=[c.id for c in chats]))

    assert status["counts"]["upgraded"] == 2
    assert emulator.upgrades == {c.id: 1 for c in chats}
    failed_chat = emulator.requests(kind="upgrade", status=503)[0].chat
    assert len([r for r in emulator.requests(kind="getInstalledApps") if r.chat == failed_chat]) == 2


def test_chats_still_failing_after_every_attempt_end_as_failed(api, app_env, tenant, emulator):
    app_env.setenv("GRAPH_INLINE_RETRY_SECONDS", "0")
    app_env.setenv("UPGRADE_MAX_ATTEMPTS", "2")
    app, chats = _setup(tenant, 2)
    emulator.inject(503, 1000, kind="getInstalledApps", retry_after=1)

    status = api.wait(api.start(teamsAppId=app.id, chatIds=[c.id for c in chats]))

    assert status["state"] == "completed"
    assert status["counts"]["failed"] == 2 and status["counts"]["pending"] == 0
    assert {f["chatId"] for f in status["failures"]} == {c.id for c in chats}
    assert all(f["status"] == 503 and f["code"] == "ServiceUnavailable" for f in status["failures"])
    assert not emulator.upgrades


def test_installation_removed_between_lookup_and_upgrade_is_not_installed(api, tenant, emulator):
    app, chats = _setup(tenant, 1)
    emulator.after["getInstalledApps"] = lambda r: tenant.chats[r.chat].installed.pop(app.id, None)

    status = api.wait(api.start(teamsAppId=app.id, chatIds=[chats[0].id]))

    assert status["counts"]["notInstalled"] == 1 and status["counts"]["failed"] == 0
    assert [r.status for r in emulator.requests(kind="upgrade")] == [404]


def test_users_that_cannot_be_listed_are_counted_and_the_rest_discovered(api, tenant, emulator):
    app = org_app(tenant)
    users = people(tenant, 4)
    tenant.users[users[0]].chats_error = (404, "NotFound", "User has no Teams license.")
    tenant.users[users[1]].chats_error = (403, "Forbidden", "Insufficient privileges.")
    chat = tenant.add_chat("group", users[1:], installed={app.id: "1.0.0"})
    emulator.inject(429, 2, kind="listChats", retry_after=1)

    status = api.wait(api.start(teamsAppId=app.id))

    assert status["counts"]["upgraded"] == 1 and emulator.upgrades == {chat.id: 1}
    assert status["discovery"] == {
        "mode": "scan",
        "usersScanned": 2,
        "usersSkipped": 1,
        "usersFailed": 1,
        "scopes": {"chat": {"mode": "scan", "usersScanned": 2, "usersSkipped": 1, "usersFailed": 1}},
    }


def test_graph_401_gets_a_fresh_token_once(api, tenant, emulator, identity):
    app, chats = _setup(tenant, 1)
    emulator.inject(401, 1, kind="getInstalledApps")
    before = len(identity.requests)

    status = api.wait(api.start(teamsAppId=app.id, chatIds=[chats[0].id]))

    assert status["counts"]["upgraded"] == 1
    assert len(identity.requests) - before == 2  # the first token, and one fresh one after the 401
