"""Teams and users' personal scope, end to end through the local host, next to chats: discovery,
explicit ids, dry run, re-runs, RSC, terminal errors, throttling with the shared POST bucket and
the per-team limit, mixed-scope runs and a worker crash."""

from __future__ import annotations

import pytest

from shared import bootstrap
from tests.support import Api, counts, group_chats, org_app, people, personal, start_host, teams


@pytest.fixture
def api(scoped, host) -> Api:  # the host starts after UPGRADE_SCOPES is set
    return Api(host.base_url)


def test_team_discovery_lists_every_team_and_upgrades_where_the_app_is_outdated(api, tenant, emulator):
    emulator.page_cap = 2  # several pages of GET /teams
    app = org_app(tenant)
    users = people(tenant, 4)
    outdated = teams(tenant, users, 3, {app.id: "1.0.0"})
    current = teams(tenant, users, 1, {app.id: "1.1.0"})
    without = teams(tenant, users, 1, {})

    status = api.wait(api.start(teamsAppId=app.id, scopes=["team"]))

    assert status["state"] == "completed" and status["scopes"] == ["team"]
    assert status["countsByScope"] == {"team": counts(upgraded=3, alreadyCurrent=1, notInstalled=1)}
    assert status["counts"] == status["countsByScope"]["team"]
    assert status["discovery"]["scopes"]["team"] == {
        "mode": "scan",
        "teamsListed": 5,
        "usersScanned": 0,
        "usersSkipped": 0,
        "usersFailed": 0,
    }
    assert emulator.upgrades == {t.id: 1 for t in outdated}
    assert all(t.installed[app.id] == "1.1.0" for t in outdated + current)
    assert sorted(r.team for r in emulator.requests(kind="getTeamInstalledApps")) == sorted(
        t.id for t in outdated + current + without
    )
    assert len(emulator.requests(kind="listTeams")) == 3
    assert not emulator.requests(kind="listChats") and not emulator.requests(kind="listUsers")


def test_personal_discovery_checks_every_user_and_reports_users_without_teams(api, tenant, emulator):
    app = org_app(tenant)
    users = people(tenant, 6)
    outdated = personal(tenant, users[:3], {app.id: "1.0.0"})
    personal(tenant, users[3:4], {app.id: "1.1.0"})
    tenant.users[users[4]].teams_enabled = False  # no Teams: Graph answers 404
    blocked = outdated[2]
    blocked.blocked.add(app.id)

    status = api.wait(api.start(teamsAppId=app.id, scopes=["personal"]))

    assert status["countsByScope"] == {"personal": counts(upgraded=2, alreadyCurrent=1, notInstalled=2, failed=1)}
    assert status["discovery"]["scopes"]["personal"] == {"mode": "scan", "usersListed": 6}
    assert status["failures"] == [
        {
            "scope": "personal",
            "userId": blocked.id,
            "status": 403,
            "code": "Forbidden",
            "message": "App is blocked by app permission policy. ... AppType: Private",
        }
    ]
    assert emulator.upgrades == {u.id: 1 for u in outdated[:2]}
    assert not emulator.requests(kind="listChats")  # the personal scope lists users, not their chats


def test_an_archived_team_and_a_blocked_team_are_failed_with_graphs_reason_and_the_run_goes_on(api, tenant, emulator):
    app = org_app(tenant)
    users = people(tenant, 3)
    archived, blocked, fine = teams(tenant, users, 3, {app.id: "1.0.0"})
    archived.archived = True
    blocked.blocked.add(app.id)

    status = api.wait(api.start(teamsAppId=app.id, teamIds=[archived.id, blocked.id, fine.id]))

    assert status["state"] == "completed"
    assert status["countsByScope"]["team"] == counts(upgraded=1, failed=2)
    failures = {f["teamId"]: f for f in status["failures"]}
    assert failures[archived.id]["status"] == 403 and "archived" in failures[archived.id]["message"]
    assert failures[blocked.id]["status"] == 403 and "blocked by the tenant admin" in failures[blocked.id]["message"]
    assert all(f["scope"] == "team" for f in status["failures"])
    assert emulator.upgrades == {fine.id: 1}
    assert len(emulator.requests(kind="upgradeTeam", status=403)) == 1  # terminal: not retried


def test_a_mixed_run_over_explicit_ids_counts_each_scope_exactly(api, tenant, emulator):
    app = org_app(tenant)
    users = people(tenant, 5)
    chats = group_chats(tenant, users, 3, {app.id: "1.0.0"})
    team_list = teams(tenant, users, 2, {app.id: "1.0.0"}) + teams(tenant, users, 1, {app.id: "1.1.0"})
    outdated_users = personal(tenant, users[:2], {app.id: "1.0.0"})
    missing_team = "00000000-0000-4000-8000-00000000dead"

    status = api.wait(
        api.start(
            teamsAppId=app.id,
            chatIds=[c.id for c in chats],
            teamIds=[t.id for t in team_list] + [missing_team.upper()],
            userIds=[u.id for u in outdated_users] + [users[4]],
        )
    )

    assert status["scopes"] == ["chat", "team", "personal"]
    assert status["countsByScope"] == {
        "chat": counts(upgraded=3),
        "team": counts(upgraded=2, alreadyCurrent=1, notInstalled=1),
        "personal": counts(upgraded=2, notInstalled=1),
    }
    assert status["counts"] == counts(upgraded=7, alreadyCurrent=1, notInstalled=2)
    assert status["discovery"]["mode"] == "explicit"
    assert emulator.upgrades == {x.id: 1 for x in [*chats, *team_list[:2], *outdated_users]}
    assert not emulator.requests(kind="listTeams") and not emulator.requests(kind="listUsers")


def test_dry_run_and_rerun_in_every_scope(api, tenant, emulator):
    app = org_app(tenant)
    users = people(tenant, 3)
    chats = group_chats(tenant, users, 2, {app.id: "1.0.0"})
    team_list = teams(tenant, users, 2, {app.id: "1.0.0"})
    personal(tenant, users, {app.id: "1.0.0"})

    dry = api.wait(api.start(teamsAppId=app.id, scopes=["chat", "team", "personal"], dryRun=True))
    first = api.wait(api.start(teamsAppId=app.id, scopes=["chat", "team", "personal"]))
    again = api.wait(api.start(teamsAppId=app.id, scopes=["chat", "team", "personal"]))

    assert {s: c["wouldUpgrade"] for s, c in dry["countsByScope"].items()} == {"chat": 2, "team": 2, "personal": 3}
    assert {s: c["upgraded"] for s, c in first["countsByScope"].items()} == {"chat": 2, "team": 2, "personal": 3}
    assert {s: c["alreadyCurrent"] for s, c in again["countsByScope"].items()} == {"chat": 2, "team": 2, "personal": 3}
    assert again["counts"]["upgraded"] == 0
    assert emulator.upgrades == {x: 1 for x in [*(c.id for c in chats), *(t.id for t in team_list), *users]}


def test_the_default_scopes_come_from_upgrade_scopes(app_env, tenant, emulator):
    app_env.setenv("UPGRADE_SCOPES", "team")
    app = org_app(tenant)
    users = people(tenant, 2)
    team = teams(tenant, users, 1, {app.id: "1.0.0"})[0]
    group_chats(tenant, users, 1, {app.id: "1.0.0"})
    host = start_host()
    try:
        api = Api(host.base_url)
        status = api.wait(api.start(teamsAppId=app.id))
        refused = api.publish({"teamsAppId": app.id, "scopes": ["chat"]})
        refused_ids = api.publish({"teamsAppId": app.id, "userIds": [users[0]]})
    finally:
        host.stop()
    assert status["scopes"] == ["team"] and emulator.upgrades == {team.id: 1}
    for response in (refused, refused_ids):
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "scopeNotEnabled"
        assert "UPGRADE_SCOPES" in response.json()["error"]["message"]


def test_group_scoped_team_discovery_lists_the_members_joined_teams_once(api, scoped, tenant, emulator):
    app = org_app(tenant)
    users = people(tenant, 5)
    group = tenant.add_group(users[:2])
    shared_team = tenant.add_team(users[:3], installed={app.id: "1.0.0"})  # both members joined it
    own_team = tenant.add_team(users[1:2], installed={app.id: "1.0.0"})
    outside = tenant.add_team(users[3:], installed={app.id: "1.0.0"})
    scoped.setenv("DISCOVERY_GROUP_ID", group)

    status = api.wait(api.start(teamsAppId=app.id, scopes=["team"]))

    assert status["countsByScope"]["team"] == counts(upgraded=2)
    assert status["discovery"]["scopes"]["team"] == {
        "mode": "scan",
        "teamsListed": 2,
        "usersScanned": 2,
        "usersSkipped": 0,
        "usersFailed": 0,
    }
    assert emulator.upgrades == {shared_team.id: 1, own_team.id: 1}
    assert outside.installed[app.id] == "1.0.0"
    assert {r.user for r in emulator.requests(kind="listJoinedTeams")} == set(users[:2])
    assert not emulator.requests(kind="listTeams")


def test_resource_specific_permissions_are_consented_in_teams_and_personal_scope(api, identity, tenant, emulator):
    permissions = [("ChannelMessage.Read.Group", "application"), ("TeamsActivity.Send.User", "application")]
    app = org_app(tenant, permissions=permissions)
    users = people(tenant, 2)
    team = teams(tenant, users, 1, {app.id: "1.0.0"})[0]
    personal(tenant, users[:1], {app.id: "1.0.0"})
    roles = ["TeamsAppInstallation.ReadWriteAndConsentForTeam.All", "TeamsAppInstallation.ReadWriteAndConsentForUser.All"]
    without = api.wait(api.start(teamsAppId=app.id, teamIds=[team.id], userIds=users[:1]))
    identity.authority.roles.extend(roles)
    bootstrap.reset()  # a new token carries the new roles (on Azure: once the cached one expires)
    try:
        with_consent = api.wait(api.start(teamsAppId=app.id, teamIds=[team.id], userIds=users[:1]))
    finally:
        for role in roles:
            identity.authority.roles.remove(role)

    assert without["counts"]["failed"] == 2
    assert {f["scope"] for f in without["failures"]} == {"team", "personal"}
    assert all(f["status"] == 403 and "ReadWriteAndConsentFor" in f["message"] for f in without["failures"])
    assert with_consent["counts"]["upgraded"] == 2, with_consent
    assert emulator.upgrades == {team.id: 1, users[0]: 1}


def test_throttled_and_failing_team_and_user_upgrades_are_retried_and_never_sent_twice(api, scoped, tenant, emulator):
    scoped.setenv("GRAPH_INLINE_RETRY_SECONDS", "0")  # every wait goes back to the queue
    app = org_app(tenant)
    users = people(tenant, 3)
    team_list = teams(tenant, users, 3, {app.id: "1.0.0"})
    personal(tenant, users, {app.id: "1.0.0"})
    emulator.inject(429, 2, kind="upgradeTeam", retry_after=1)
    emulator.inject(503, 1, kind="upgradeUser")
    emulator.inject(429, 1, kind="getUserInstalledApps", retry_after=1)

    status = api.wait(api.start(teamsAppId=app.id, teamIds=[t.id for t in team_list], userIds=users))

    assert status["counts"] == counts(upgraded=6)
    assert emulator.upgrades == {x: 1 for x in [*(t.id for t in team_list), *users]}
    failed_user = emulator.requests(kind="upgradeUser", status=503)[0].user
    assert len([r for r in emulator.requests(kind="getUserInstalledApps", status=200) if r.user == failed_user]) == 2
