"""A version the catalog does not list yet: the run waits (state `waiting`, reason `catalog`), looks
again, and goes on once the version shows, upgrading to it and nothing before; it fails
`versionNotPublished` after CATALOG_WAIT; cancel works while it waits; and the catalog watcher
starts no second run for that version (nor one that would fail beside a run given chat ids: its own
starts once that run is over)."""

from __future__ import annotations

import time
from datetime import datetime

from tests.support import Api, final_for_good, group_chats, org_app, people, start_host


def _at(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_a_version_listed_six_seconds_after_the_request_is_upgraded_to_and_nothing_before(app_env, azurite, tenant, emulator):
    app = org_app(tenant)
    app_env.setenv("WATCHED_APP_IDS", app.id)
    ids = [c.id for c in group_chats(tenant, people(tenant, 2), 5, {app.id: "1.0.0"})]
    host = start_host()
    try:
        api = Api(host.base_url)
        assert host.fire("catalog_watcher")  # the watcher has seen 1.1.0
        tenant.publish(app.id, "1.2.0", listed_after=6)
        listed = time.time() + 6
        run_id = api.start(teamsAppId=app.id, version="1.2.0")  # every installation: what the watcher would start

        waiting = api.wait(run_id, until=lambda s: s["state"] == "waiting")
        assert waiting["waiting"]["reason"] == "catalog"
        assert _at(waiting["waiting"]["resumesAt"]) - _at(waiting["createdAt"]) <= 5.5  # the first look again within 5 s
        assert waiting["targetVersion"] == "1.2.0" and waiting["counts"]["targets"] == 0

        status = api.wait(run_id, timeout=90)
        assert status["state"] == "completed" and status["counts"]["upgraded"] == 5 and status["waiting"] is None
        assert {c.installed[app.id] for c in tenant.chats.values()} == {"1.2.0"}
        assert min(r.t for r in emulator.requests() if r.chat or r.kind == "listUsers") >= listed  # nothing before it was listed
        assert emulator.upgrades == dict.fromkeys(ids, 1)

        assert host.fire("catalog_watcher")  # it sees 1.2.0 published now: the run above covers it
        assert [r["runId"] for r in api.runs().json()["value"]] == [run_id]
    finally:
        host.stop()


def test_the_watcher_starts_its_run_for_a_version_once_a_run_given_chat_ids_that_waited_for_it_is_over(
    app_env, azurite, tenant, emulator
):
    app = org_app(tenant)
    app_env.setenv("WATCHED_APP_IDS", app.id)
    chats = group_chats(tenant, people(tenant, 2), 4, {app.id: "1.0.0"})
    pilots = [c.id for c in chats[:2]]
    host = start_host()
    try:
        api = Api(host.base_url)
        assert host.fire("catalog_watcher")  # the watcher has seen 1.1.0
        tenant.publish(app.id, "1.2.0", requires_review=True)
        run_id = api.start(
            teamsAppId=app.id, version="1.2.0", chatIds=pilots, rollout={"steps": [{"upgrade": {"targets": 1}}, {"pause": {}}]}
        )
        api.wait(run_id, until=lambda s: s["state"] == "waiting")
        tenant.approve(app.id, "1.2.0")
        api.wait(run_id, until=lambda s: s["state"] == "paused")  # the pilot run, paused after its first chat

        assert host.fire("catalog_watcher")  # sees 1.2.0, and the pilot run going: no run of its own yet
        assert [r["runId"] for r in api.runs().json()["value"]] == [run_id]
        api.act(run_id, "resume")
        assert api.wait(run_id)["counts"]["upgraded"] == 2

        assert host.fire("catalog_watcher")  # the pilot run is over: the full run for 1.2.0
        runs = api.runs().json()["value"]
        assert len(runs) == 2 and runs[0]["trigger"] == "catalogWatcher"
        full = api.wait(runs[0]["runId"])
        assert full["state"] == "completed" and full["targetVersion"] == "1.2.0"
        assert full["counts"]["upgraded"] == 2 and full["counts"]["alreadyCurrent"] == 2  # the pilots at a GET each
        assert emulator.upgrades == {c.id: 1 for c in chats}
    finally:
        host.stop()


def test_a_version_awaiting_approval_is_waited_for(api, tenant, emulator):
    app = org_app(tenant)
    ids = [c.id for c in group_chats(tenant, people(tenant, 2), 3, {app.id: "1.0.0"})]
    tenant.publish(app.id, "1.2.0", requires_review=True)
    run_id = api.start(teamsAppId=app.id, version="1.2.0", chatIds=ids)
    api.wait(run_id, until=lambda s: s["state"] == "waiting")
    tenant.approve(app.id, "1.2.0")
    status = api.wait(run_id, timeout=60)
    assert status["state"] == "completed" and status["targetVersion"] == "1.2.0" and status["counts"]["upgraded"] == 3


def test_the_wait_ends_failed_after_catalog_wait(app_env, azurite, tenant, emulator):
    app_env.setenv("CATALOG_WAIT", "PT3S")
    app = org_app(tenant)
    host = start_host()
    try:
        api = Api(host.base_url)
        run_id = api.start(teamsAppId=app.id, version="2.0.0")
        assert api.wait(run_id, until=lambda s: s["state"] == "waiting")["waiting"]["reason"] == "catalog"
        status = final_for_good(api, azurite, run_id)
    finally:
        host.stop()
    assert status["state"] == "failed" and status["error"]["code"] == "versionNotPublished"
    assert "is not published yet" in status["error"]["message"] and "(CATALOG_WAIT)" in status["error"]["message"]
    assert [r for r in emulator.requests() if r.chat or r.kind == "listUsers"] == []


def test_an_older_version_and_an_unknown_app_fail_at_once(api, tenant, emulator):
    app = org_app(tenant, versions=("1.0.0", "1.1.0"))
    older = api.wait(api.start(teamsAppId=app.id, version="1.0.0"))
    assert (older["state"], older["error"]["code"]) == ("failed", "versionNotPublished")
    assert "older than the newest published version, 1.1.0" in older["error"]["message"]
    unknown = api.wait(api.start(teamsAppId="00000000-0000-4000-8000-000000000002", version="1.2.0"))
    assert (unknown["state"], unknown["error"]["code"], unknown["waiting"]) == ("failed", "appNotFound", None)


def test_cancel_while_waiting_for_the_catalog_is_final_at_once(api, azurite, tenant, emulator):
    app = org_app(tenant)
    run_id = api.start(teamsAppId=app.id, version="3.0.0")
    api.wait(run_id, until=lambda s: s["state"] == "waiting")
    answer = api.act(run_id, "cancel")
    assert answer.status_code == 202 and answer.json()["state"] == "cancelled"
    status = final_for_good(api, azurite, run_id)  # the delayed look comes and changes nothing
    assert status["state"] == "cancelled" and status["counts"]["targets"] == 0


def test_a_run_waiting_for_the_catalog_is_the_apps_running_run(api, tenant, emulator):
    app = org_app(tenant)
    ids = [c.id for c in group_chats(tenant, people(tenant, 2), 2, {app.id: "1.0.0"})]
    waiting = api.start(teamsAppId=app.id, version="1.5.0", chatIds=ids)
    api.wait(waiting, until=lambda s: s["state"] == "waiting")
    other = api.wait(api.start(teamsAppId=app.id, chatIds=ids))
    assert (other["state"], other["error"]["code"]) == ("failed", "runInProgress") and waiting in other["error"]["message"]
    api.act(waiting, "cancel")
