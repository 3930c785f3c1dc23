"""Whole runs through the local host: publish -> discover -> upgrade, with the run status."""

from __future__ import annotations

import threading

from tests.support import group_chats, org_app, people


def test_explicit_chats_end_on_the_target_version_and_counts_are_exact(api, tenant, emulator):
    app = org_app(tenant)
    users = people(tenant, 3)
    outdated = group_chats(tenant, users, 4, {app.id: "1.0.0"})
    current = group_chats(tenant, users, 2, {app.id: "1.1.0"})
    without = group_chats(tenant, users, 1, {})
    missing = "19:ffffffffffffffffffffffffffffffff@thread.v2"  # deleted chat: Graph says 404
    chat_ids = [c.id for c in outdated + current + without] + [missing, outdated[0].id]

    run_id = api.start(teamsAppId=app.id, chatIds=chat_ids, version="1.1.0")
    status = api.wait(run_id)

    assert status["state"] == "completed"
    assert status["targetVersion"] == "1.1.0"
    assert status["teamsAppId"] == app.id
    assert status["counts"] == {
        "targets": 8,
        "upgraded": 4,
        "wouldUpgrade": 0,
        "alreadyCurrent": 2,
        "notInstalled": 2,
        "failed": 0,
        "cancelled": 0,
        "pending": 0,
    }
    assert status["failures"] == [] and status["error"] is None
    assert all(c.installed[app.id] == "1.1.0" for c in outdated)
    assert emulator.upgrades == {c.id: 1 for c in outdated}
    gets = emulator.requests(kind="getInstalledApps")
    assert sorted(r.chat for r in gets) == sorted(set(chat_ids))  # one GET per target chat
    assert emulator.min_chat_gap() >= 1.0


def test_discovery_targets_each_shared_group_chat_once(api, tenant, emulator):
    app = org_app(tenant)
    users = people(tenant, 6)
    shared = group_chats(tenant, users, 3, {app.id: "1.0.0"})  # every member lists these
    one_on_one = tenant.add_chat("oneOnOne", users[:2], installed={app.id: "1.0.0"})
    meeting = tenant.add_chat("meeting", users[2:5], installed={app.id: "1.1.0"})
    tenant.add_chat("group", users[:3], installed={})  # app not installed: not discovered
    other = tenant.add_app("Other app", versions=("3.0.0",))
    tenant.add_chat("group", users[3:], installed={other.id: "2.0.0"})

    run_id = api.start(teamsAppId=app.id)
    status = api.wait(run_id)

    assert status["state"] == "completed"
    assert status["counts"]["targets"] == 5
    assert status["counts"]["upgraded"] == 4 and status["counts"]["alreadyCurrent"] == 1
    assert status["discovery"]["usersScanned"] == 6
    assert emulator.upgrades == {c.id: 1 for c in [*shared, one_on_one]}
    gets = [r.chat for r in emulator.requests(kind="getInstalledApps")]
    assert sorted(gets) == sorted({c.id for c in [*shared, one_on_one, meeting]})
    assert len(emulator.requests(kind="listChats")) == 6


def test_discovery_follows_every_page_of_users_and_of_chats(api, tenant, emulator):
    emulator.page_cap = 3  # Graph may return fewer items than $top: follow @odata.nextLink
    app = org_app(tenant)
    users = people(tenant, 8)
    chats = group_chats(tenant, users[:2], 7, {app.id: "1.0.0"})

    status = api.wait(api.start(teamsAppId=app.id))

    assert status["counts"]["upgraded"] == 7
    assert status["discovery"]["usersScanned"] == 8
    assert len(emulator.requests(kind="listUsers")) == 3
    assert emulator.upgrades == {c.id: 1 for c in chats}


def test_group_scoped_discovery_scans_only_transitive_members(api, app_env, tenant, emulator):
    app = org_app(tenant)
    users = people(tenant, 6)
    nested = tenant.add_group([users[2]])
    group = tenant.add_group([users[0], users[1], nested])
    inside = tenant.add_chat("group", [*users[0:2], users[5]], installed={app.id: "1.0.0"})
    via_nested = tenant.add_chat("oneOnOne", [users[2], users[3]], installed={app.id: "1.0.0"})
    outside = tenant.add_chat("group", users[3:6], installed={app.id: "1.0.0"})
    app_env.setenv("DISCOVERY_GROUP_ID", group)

    status = api.wait(api.start(teamsAppId=app.id))

    assert status["counts"]["upgraded"] == 2
    assert emulator.upgrades == {inside.id: 1, via_nested.id: 1}
    assert outside.installed[app.id] == "1.0.0"
    assert {r.user for r in emulator.requests(kind="listChats")} == {users[0], users[1], users[2]}
    assert not emulator.requests(kind="listUsers")


def test_dry_run_counts_and_changes_nothing(api, tenant, emulator):
    app = org_app(tenant)
    users = people(tenant, 3)
    outdated = group_chats(tenant, users, 3, {app.id: "1.0.0"})
    group_chats(tenant, users, 2, {app.id: "1.1.0"})

    status = api.wait(api.start(teamsAppId=app.id, dryRun=True))

    assert status["dryRun"] is True and status["state"] == "completed"
    assert status["counts"]["wouldUpgrade"] == 3 and status["counts"]["alreadyCurrent"] == 2
    assert status["counts"]["upgraded"] == 0
    assert not emulator.requests(kind="upgrade")
    assert all(c.installed[app.id] == "1.0.0" for c in outdated)


def test_rerun_is_idempotent(api, tenant, emulator):
    app = org_app(tenant)
    users = people(tenant, 3)
    chats = group_chats(tenant, users, 4, {app.id: "1.0.0"})

    first = api.wait(api.start(teamsAppId=app.id))
    second = api.wait(api.start(teamsAppId=app.id))

    assert first["counts"]["upgraded"] == 4
    assert second["counts"]["upgraded"] == 0 and second["counts"]["alreadyCurrent"] == 4
    assert emulator.upgrades == {c.id: 1 for c in chats}


def test_versions_compare_numerically(api, tenant, emulator):
    app = org_app(tenant, versions=("1.9.0", "1.10.0"))
    users = people(tenant, 2)
    old = tenant.add_chat("group", users, installed={app.id: "1.9.0"})
    new = tenant.add_chat("group", users, installed={app.id: "1.10.0"})

    status = api.wait(api.start(teamsAppId=app.id, chatIds=[old.id, new.id]))

    assert status["targetVersion"] == "1.10.0"
    assert status["counts"]["upgraded"] == 1 and status["counts"]["alreadyCurrent"] == 1
    assert emulator.upgrades == {old.id: 1}


def test_app_found_by_external_id(api, tenant, emulator):
    app = org_app(tenant)
    chat = tenant.add_chat("group", people(tenant, 2), installed={app.id: "1.0.0"})

    status = api.wait(api.start(externalId=app.external_id, chatIds=[chat.id]))

    assert status["teamsAppId"] == app.id
    assert status["counts"]["upgraded"] == 1


def test_unknown_app_fails_the_run(api, tenant, emulator):
    status = api.wait(api.start(teamsAppId="00000000-0000-4000-8000-000000000000"))
    assert status["state"] == "failed"
    assert status["error"]["code"] == "appNotFound"
    assert status["counts"]["targets"] == 0

    status = api.wait(api.start(externalId="no-such-manifest-id"))
    assert status["error"]["code"] == "appNotFound"


def test_an_older_version_fails_the_run_and_one_awaiting_review_waits(api, tenant, emulator):
    app = org_app(tenant)
    tenant.publish(app.id, "1.2.0", requires_review=True)  # submitted, awaiting review
    chat = tenant.add_chat("group", people(tenant, 2), installed={app.id: "1.0.0"})

    older = api.wait(api.start(teamsAppId=app.id, version="1.0.0", chatIds=[chat.id]))
    assert (older["state"], older["error"]["code"]) == ("failed", "versionNotPublished")
    assert "1.1.0" in older["error"]["message"]
    submitted = api.start(teamsAppId=app.id, version="1.2.0", chatIds=[chat.id])
    waiting = api.wait(submitted, until=lambda s: s["state"] == "waiting")
    assert waiting["waiting"]["reason"] == "catalog" and waiting["error"] is None
    api.act(submitted, "cancel")
    assert not emulator.requests(kind="getInstalledApps")
    assert chat.installed[app.id] == "1.0.0"


def test_resource_specific_permissions_are_consented_on_upgrade(api, identity, tenant, emulator):
    permissions = [("ChatMessage.Read.Chat", "application"), ("OnlineMeeting.ReadBasic.Chat", "delegated")]
    app = org_app(tenant, permissions=permissions)
    chat = tenant.add_chat("group", people(tenant, 2), installed={app.id: "1.0.0"})
    identity.authority.roles.append("TeamsAppInstallation.ReadWriteAndConsentForChat.All")
    try:
        status = api.wait(api.start(teamsAppId=app.id, chatIds=[chat.id]))
    finally:
        identity.authority.roles.remove("TeamsAppInstallation.ReadWriteAndConsentForChat.All")

    assert status["counts"]["upgraded"] == 1, status
    assert chat.installed[app.id] == "1.1.0"


def test_rsc_app_without_the_consent_permission_fails_with_graphs_reason(api, tenant, emulator):
    app = org_app(tenant, permissions=[("ChatMessage.Read.Chat", "application")])
    chat = tenant.add_chat("group", people(tenant, 2), installed={app.id: "1.0.0"})

    status = api.wait(api.start(teamsAppId=app.id, chatIds=[chat.id]))

    assert status["state"] == "completed"
    assert status["counts"]["failed"] == 1
    [failure] = status["failures"]
    assert failure["chatId"] == chat.id and failure["status"] == 403 and failure["code"] == "Forbidden"
    assert "ReadWriteAndConsentForChat" in failure["message"]
    assert len(emulator.requests(kind="upgrade")) == 1  # terminal: not retried


def test_ids_with_reserved_characters_are_encoded_in_every_path_segment(api, tenant, emulator):
    app = org_app(tenant)
    users = people(tenant, 2)
    # installation ids are opaque; these hold '/', '+' and '=' like some real ones
    chats = [tenant.add_chat("group", users, installed={app.id: "1.0.0"}) for _ in range(2)]
    chats[0].installation_ids[app.id] = "MTk6YWJj/ZGVm+Z2hp=="
    chats[1].installation_ids[app.id] = "a/b/c+d=="

    status = api.wait(api.start(teamsAppId=app.id, chatIds=[c.id for c in chats]))

    assert status["counts"]["upgraded"] == 2, status
    assert emulator.upgrades == {c.id: 1 for c in chats}


def test_blocked_app_is_reported_as_failed_and_not_retried(api, tenant, emulator):
    app = org_app(tenant)
    users = people(tenant, 2)
    blocked = tenant.add_chat("group", users, installed={app.id: "1.0.0"})
    blocked.blocked.add(app.id)
    fine = tenant.add_chat("group", users, installed={app.id: "1.0.0"})

    status = api.wait(api.start(teamsAppId=app.id, chatIds=[blocked.id, fine.id]))

    assert status["counts"]["upgraded"] == 1 and status["counts"]["failed"] == 1
    assert status["failures"] == [
        {
            "scope": "chat",
            "chatId": blocked.id,
            "status": 403,
            "code": "Forbidden",
            "message": "App is blocked by app permission policy. ... AppType: Private",
        }
    ]
    assert [r.chat for r in emulator.requests(kind="upgrade", status=403)] == [blocked.id]


def test_a_second_run_of_the_same_app_waits_for_the_first(api, tenant, emulator):
    app = org_app(tenant)
    chats = group_chats(tenant, people(tenant, 2), 2, {app.id: "1.0.0"})
    reached, release = threading.Event(), threading.Event()

    def hold(chat_id: str) -> None:
        reached.set()
        release.wait(30)

    emulator.on_upgrade = hold
    first = api.start(teamsAppId=app.id, chatIds=[c.id for c in chats])
    try:
        assert reached.wait(30)
        second = api.wait(api.start(teamsAppId=app.id, chatIds=[chats[0].id]))
        dry = api.wait(api.start(teamsAppId=app.id, chatIds=[c.id for c in chats], dryRun=True))
    finally:
        release.set()
    assert second["state"] == "failed" and second["error"]["code"] == "runInProgress"
    assert first in second["error"]["message"]
    assert dry["state"] == "completed"  # dry runs change nothing, so they may overlap
    assert api.wait(first)["counts"]["upgraded"] == 2
    assert emulator.upgrades == {c.id: 1 for c in chats}
