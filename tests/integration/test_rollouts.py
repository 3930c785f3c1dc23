"""Rollouts over time, as an operator sees them on the running app: steps in order with exact counts,
pauses for an operator, bakes (waiting, then going on by themselves or promoted), the failure budget
of a step, percent steps that wait for discovery, the deployment's ROLLOUT, pilot rings by group,
and cancel in every state. Windows are in tests/e2e/test_windows.py; workers killed during a bake in
tests/e2e/test_worker_processes.py."""

from __future__ import annotations

import base64
import json
import threading
import uuid
from datetime import UTC, datetime, timedelta

import azure.functions as func
from azure.storage.queue import QueueServiceClient

from shared.domain.messages import AdvanceRun, StartRun
from shared.domain.runs import RunSpec
from shared.domain.targets import Target
from shared.foundation.storage import CONTROL_QUEUE
from tests.support import Api, final_for_good, group_chats, org_app, people, personal, start_host, stores, tight_limits, wait_for

TWO_STEPS = {"steps": [{"upgrade": {"targets": 4}}, {"pause": {}}, {"upgrade": {"percent": 50}}, {"pause": {"duration": "PT3S"}}]}


def _at(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _upgrades(emulator) -> list:
    """Successful upgrade POSTs, in the order they arrived."""
    posts = [r for r in emulator.requests() if r.method == "POST" and r.kind.startswith("upgrade") and r.status == 204]
    return sorted(posts, key=lambda r: r.t)


def queued_run(azurite, app_id: str, chat_ids: list[str]) -> str:
    """A run as POST /api/publish records it, before its start message is sent."""
    run_id = uuid.uuid4().hex
    runs, _ = stores(azurite)
    spec = RunSpec(
        run_id=run_id,
        teams_app_id=app_id,
        external_id=None,
        version=None,
        dry_run=False,
        targets=[Target("chat", i) for i in chat_ids],
    )
    runs.create_run(spec)
    return run_id


def _checks(emulator) -> list:
    return [r for r in emulator.requests() if r.method == "GET" and "Installed" in r.kind]


def test_steps_go_in_order_with_exact_counts_pausing_and_baking_between_them(api, app_env, tenant, emulator):
    tight_limits(emulator, app_env, 20)
    app = org_app(tenant)
    ids = [c.id for c in group_chats(tenant, people(tenant, 2), 20, {app.id: "1.0.0"})]

    run_id = api.start(teamsAppId=app.id, chatIds=ids, rollout=TWO_STEPS)
    paused = api.wait(run_id, until=lambda s: s["state"] == "paused")

    # step 1: the first 4 ids given, then a pause for an operator
    assert {k: v for k, v in paused["pause"].items() if k != "at"} == {"reason": "step", "step": 1, "decided": 4, "failed": 0}
    assert paused["rollout"]["step"] == 1 and paused["waiting"] is None
    assert paused["counts"]["upgraded"] == 4 and paused["counts"]["pending"] == 16
    assert [r.chat for r in _upgrades(emulator)] and {r.chat for r in _upgrades(emulator)} == set(ids[:4])
    assert {r.chat for r in _checks(emulator)} == set(ids[:4])  # the others not even looked at

    resumed = api.act(run_id, "resume")
    assert resumed.status_code == 202, resumed.text
    baking = api.wait(run_id, until=lambda s: s["state"] == "waiting")

    # step 3: up to 50 % of the run's targets decided, then a bake
    assert baking["waiting"]["reason"] == "bake" and baking["rollout"]["step"] == 3
    assert baking["counts"]["upgraded"] == 10 and {r.chat for r in _upgrades(emulator)} == set(ids[:10])
    resumes_at = _at(baking["waiting"]["resumesAt"])
    status = api.wait(run_id)

    assert status["state"] == "completed" and status["counts"]["upgraded"] == 20
    assert status["rollout"]["step"] == 4 and status["waiting"] is None
    later = [r for r in _upgrades(emulator) if r.chat in set(ids[10:])]
    assert len(later) == 10 and min(r.t for r in later) >= resumes_at  # nothing during the bake
    assert emulator.upgrades == dict.fromkeys(ids, 1)


def test_resume_cuts_a_bake_short(api, tenant, emulator):
    app = org_app(tenant)
    ids = [c.id for c in group_chats(tenant, people(tenant, 2), 6, {app.id: "1.0.0"})]
    run_id = api.start(
        teamsAppId=app.id, chatIds=ids, rollout={"steps": [{"upgrade": {"targets": 2}}, {"pause": {"duration": "PT1H"}}]}
    )

    baking = api.wait(run_id, until=lambda s: s["state"] == "waiting")
    assert baking["waiting"]["reason"] == "bake" and baking["counts"]["upgraded"] == 2
    assert _at(baking["waiting"]["resumesAt"]) - datetime.now(UTC).timestamp() > 3500

    promoted = api.act(run_id, "resume")
    assert promoted.status_code == 202 and promoted.json()["waiting"] is None
    status = api.wait(run_id)
    assert status["state"] == "completed" and status["counts"]["upgraded"] == 6
    assert emulator.upgrades == dict.fromkeys(ids, 1)


def test_a_step_over_its_failure_budget_pauses_and_nothing_is_sent_after(api, app_env, tenant, emulator):
    tight_limits(emulator, app_env, 20)
    app = org_app(tenant)
    chats = group_chats(tenant, people(tenant, 2), 12, {app.id: "1.0.0"})
    for chat in chats[:2]:
        chat.blocked.add(app.id)  # 2 of the first step's 5 fail: 40 % > 20 %
    ids = [c.id for c in chats]
    plan = {"steps": [{"upgrade": {"targets": 5}}, {"upgrade": {"percent": 100}}], "maxFailedPercent": 20}

    run_id = api.start(teamsAppId=app.id, chatIds=ids, rollout=plan)
    paused = api.wait(run_id, until=lambda s: s["state"] == "paused")

    assert {k: v for k, v in paused["pause"].items() if k != "at"} == {
        "reason": "stepFailed",
        "step": 0,
        "decided": 5,
        "failed": 2,
    }
    assert (paused["counts"]["upgraded"], paused["counts"]["failed"], paused["counts"]["pending"]) == (3, 2, 7)
    assert [r for r in _upgrades(emulator) if r.t > _at(paused["pause"]["at"])] == []
    assert {r.chat for r in emulator.requests() if r.chat and r.t > _at(paused["pause"]["at"])} == set()

    api.act(run_id, "resume")  # the operator looked at the failures: the next step goes on
    status = api.wait(run_id)
    assert status["state"] == "completed" and (status["counts"]["upgraded"], status["counts"]["failed"]) == (10, 2)


def test_a_percent_step_waits_for_discovery_to_know_its_size(api, tenant, emulator):
    app = org_app(tenant)
    users = people(tenant, 6)
    for i in range(6):  # 12 chats, found user by user
        group_chats(tenant, [users[i], users[(i + 1) % 6]], 2, {app.id: "1.0.0"})

    run_id = api.start(teamsAppId=app.id, rollout={"steps": [{"upgrade": {"percent": 50}}, {"pause": {}}]})
    paused = api.wait(run_id, until=lambda s: s["state"] == "paused")

    assert paused["counts"]["targets"] == 12 and paused["counts"]["upgraded"] == 6 and paused["counts"]["pending"] == 6
    listed = max(r.t for r in emulator.requests() if r.kind == "listChats")
    assert min(r.t for r in _checks(emulator)) > listed  # not one target decided before discovery was over
    api.act(run_id, "cancel")
    cancelled = api.wait(run_id)
    assert cancelled["state"] == "cancelled" and cancelled["counts"]["cancelled"] == 6


def test_the_deployments_rollout_is_the_plan_of_runs_that_ask_for_none(app_env, tenant, emulator):
    plan = {"steps": [{"upgrade": {"targets": 2}}, {"pause": {}}], "maxFailedPercent": 10}
    app_env.setenv("ROLLOUT", json.dumps(plan))
    host = start_host()
    try:
        api = Api(host.base_url)
        app = org_app(tenant)
        ids = [c.id for c in group_chats(tenant, people(tenant, 2), 5, {app.id: "1.0.0"})]

        paused = api.wait(api.start(teamsAppId=app.id, chatIds=ids), until=lambda s: s["state"] == "paused")
        assert paused["rollout"] == {**plan, "maxFailedPercent": 10.0, "window": None, "step": 1}
        assert paused["counts"]["upgraded"] == 2
        api.act(paused["runId"], "cancel")
        api.wait(paused["runId"])

        canary = api.wait(api.start(teamsAppId=app.id, chatIds=ids, canary={"targets": 1}))  # a canary replaces it
        assert canary["rollout"] is None and canary["canary"]["targets"] == 1 and canary["state"] == "completed"
        dry = api.wait(api.start(teamsAppId=app.id, chatIds=ids, dryRun=True))  # a dry run upgrades nothing: no plan
        assert dry["rollout"] is None and dry["state"] == "completed"
    finally:
        host.stop()


def test_a_malformed_rollout_setting_is_a_configuration_error_naming_it(api, app_env):
    from shared import bootstrap

    app_env.setenv("ROLLOUT", json.dumps({"steps": [{"upgrade": {"percent": 150}}]}))
    bootstrap.reset()
    response = api.session.get(f"{api.base_url}/api/health")
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["code"] == "configurationError" and "ROLLOUT.steps[0].upgrade.percent" in error["message"]


def test_a_malformed_setting_puts_queue_work_back_until_it_is_fixed(app_env, azurite, tenant, emulator, monkeypatch, caplog):
    from shared import bootstrap
    from shared.queues import control, parking

    app = org_app(tenant)
    ids = [c.id for c in group_chats(tenant, people(tenant, 2), 3, {app.id: "1.0.0"})]
    run_id = queued_run(azurite, app.id, ids)
    start = StartRun(run_id=run_id).encode().encode()

    app_env.setenv("ROLLOUT", "{not json")
    bootstrap.reset()
    monkeypatch.setattr(parking, "PARK_SECONDS", 1)
    control.handle(func.QueueMessage(id="m1", body=start))  # ends well: the host deletes the message it delivered
    queue = QueueServiceClient.from_connection_string(azurite.connection_string).get_queue_client(CONTROL_QUEUE)
    assert queue.get_queue_properties().approximate_message_count == 1  # its copy, hidden for PARK_SECONDS
    assert "Configuration error: ROLLOUT is not valid JSON" in caplog.text and not emulator.requests()

    app_env.delenv("ROLLOUT")  # fixed: the app restarts with it, and the run goes on as if nothing happened
    bootstrap.reset()
    host = start_host()
    try:
        status = Api(host.base_url).wait(run_id, timeout=60)
    finally:
        host.stop()
    assert status["state"] == "completed" and status["counts"]["upgraded"] == 3 and emulator.upgrades == dict.fromkeys(ids, 1)


def test_a_pilot_ring_is_its_groups_members_in_every_scope_then_a_full_run_finds_them_current(api, app_env, tenant, emulator):
    app_env.setenv("UPGRADE_SCOPES", "chat,team,personal")
    from shared import bootstrap

    bootstrap.reset()
    app = org_app(tenant)
    pilots, others = people(tenant, 3), people(tenant, 3)
    ring = tenant.add_group(pilots)
    pilot_chats = group_chats(tenant, pilots[:2], 2, {app.id: "1.0.0"})
    other_chats = group_chats(tenant, others[:2], 2, {app.id: "1.0.0"})
    pilot_team = tenant.add_team(pilots, installed={app.id: "1.0.0"})
    other_team = tenant.add_team(others, installed={app.id: "1.0.0"})
    personal(tenant, pilots + others, {app.id: "1.0.0"})

    ringed = api.wait(api.start(teamsAppId=app.id, groupId=ring))
    assert ringed["state"] == "completed" and ringed["groupId"] == ring
    by_scope = {scope: counts["upgraded"] for scope, counts in ringed["countsByScope"].items()}
    assert by_scope == {"chat": 2, "team": 1, "personal": 3}
    assert set(emulator.upgrades) == {c.id for c in pilot_chats} | {pilot_team.id} | set(pilots)

    full = api.wait(api.start(teamsAppId=app.id))
    assert full["state"] == "completed" and full["groupId"] is None
    assert full["counts"]["alreadyCurrent"] == 6 and full["counts"]["upgraded"] == 6
    assert set(emulator.upgrades) == {c.id for c in pilot_chats + other_chats} | {pilot_team.id, other_team.id} | set(
        pilots + others
    )
    assert all(n == 1 for n in emulator.upgrades.values())


def test_cancel_works_while_paused_and_while_baking(api, tenant, emulator):
    app = org_app(tenant)
    ids = [c.id for c in group_chats(tenant, people(tenant, 2), 6, {app.id: "1.0.0"})]
    for plan, state in (
        ({"steps": [{"upgrade": {"targets": 2}}, {"pause": {}}]}, "paused"),
        ({"steps": [{"upgrade": {"targets": 2}}, {"pause": {"duration": "PT1H"}}]}, "waiting"),
    ):
        run_id = api.start(teamsAppId=app.id, chatIds=ids, rollout=plan)
        held = api.wait(run_id, until=lambda s, state=state: s["state"] == state)
        answer = api.act(run_id, "cancel")
        assert answer.status_code == 202 and answer.json()["state"] in ("cancelling", "cancelled")
        status = api.wait(run_id)
        assert status["state"] == "cancelled" and status["counts"]["cancelled"] == held["counts"]["pending"] == 4
        assert api.act(run_id, "resume").json()["error"]["code"] == "runNotPaused"
        for chat in tenant.chats.values():
            chat.installed[app.id] = "1.0.0"  # as before, for the next plan
        emulator.upgrades.clear()


def test_cancel_works_while_queued(api, azurite, tenant, emulator):
    app = org_app(tenant)
    ids = [c.id for c in group_chats(tenant, people(tenant, 2), 2, {app.id: "1.0.0"})]
    run_id = queued_run(azurite, app.id, ids)  # its start message has not come yet
    assert api.status(run_id)["state"] == "queued"
    assert api.act(run_id, "cancel").status_code == 202
    queue = QueueServiceClient.from_connection_string(azurite.connection_string).get_queue_client(CONTROL_QUEUE)
    queue.send_message(base64.b64encode(StartRun(run_id=run_id).encode().encode()).decode())  # it comes now
    status = final_for_good(api, azurite, run_id)
    assert status["state"] == "cancelled" and status["counts"]["targets"] == 0 and not emulator.requests(kind="getInstalledApps")


def test_a_bake_longer_than_a_queue_message_can_wait_is_looked_at_again_when_its_message_comes_early(
    api, azurite, tenant, emulator
):
    from shared import bootstrap
    from shared.queues import control

    app = org_app(tenant)
    ids = [c.id for c in group_chats(tenant, people(tenant, 2), 3, {app.id: "1.0.0"})]
    run_id = api.start(
        teamsAppId=app.id, chatIds=ids, rollout={"steps": [{"upgrade": {"targets": 1}}, {"pause": {"duration": "P10D"}}]}
    )
    baking = api.wait(run_id, until=lambda s: s["state"] == "waiting")
    assert _at(baking["waiting"]["resumesAt"]) - datetime.now(UTC).timestamp() > 9.9 * 86400
    queue = QueueServiceClient.from_connection_string(azurite.connection_string).get_queue_client(CONTROL_QUEUE)
    wait_for(
        lambda: queue.get_queue_properties().approximate_message_count == 1
    )  # its wake, hidden for the 7 days a queue allows

    # the wake arrives after 7 days, three before the bake ends: it is sent on, and nothing else moves
    control.handle(func.QueueMessage(id="early", body=AdvanceRun(run_id=run_id).encode().encode()), bootstrap.get())
    assert queue.get_queue_properties().approximate_message_count == 2
    assert api.status(run_id) == baking and len(emulator.upgrades) == 1
    api.act(run_id, "cancel")


def test_the_run_keeper_reports_a_run_paused_longer_than_paused_alert_after(api, app_env, tenant, emulator, caplog):
    from shared import bootstrap
    from shared.queues import timers

    app_env.setenv("PAUSED_ALERT_AFTER", "PT0.5S")
    bootstrap.reset()
    app = org_app(tenant)
    ids = [c.id for c in group_chats(tenant, people(tenant, 2), 4, {app.id: "1.0.0"})]
    run_id = api.start(teamsAppId=app.id, chatIds=ids, rollout={"steps": [{"upgrade": {"targets": 1}}, {"pause": {}}]})
    api.wait(run_id, until=lambda s: s["state"] == "paused")

    wait_for(lambda: datetime.now(UTC).timestamp() - _at(api.status(run_id)["pause"]["at"]) > 0.5)
    with caplog.at_level("WARNING", logger="upgrader"):
        timers.keep_runs_going(bootstrap.get())
    reports = [r for r in caplog.records if getattr(r, "event", None) == "runPausedTooLong"]
    assert [r.runId for r in reports] == [run_id]


def test_the_run_keeper_reports_a_run_that_recorded_nothing_for_a_while(api, app_env, tenant, emulator, caplog, monkeypatch):
    from shared import bootstrap
    from shared.queues import timers
    from shared.steering import keeper

    monkeypatch.setattr(keeper, "STALLED_AFTER", timedelta(seconds=1))
    reached, release = threading.Event(), threading.Event()
    emulator.on_upgrade = lambda _: (reached.set(), release.wait(30))  # Graph sits on the upgrade's answer
    app = org_app(tenant)
    ids = [c.id for c in group_chats(tenant, people(tenant, 2), 1, {app.id: "1.0.0"})]
    run_id = api.start(teamsAppId=app.id, chatIds=ids)
    try:
        assert reached.wait(30)
        stalled = api.status(run_id)
        assert stalled["state"] in ("discovering", "upgrading") and stalled["counts"]["pending"] == 1
        with caplog.at_level("WARNING", logger="upgrader"):
            wait_for(lambda: datetime.now(UTC).timestamp() - _at(stalled["updatedAt"]) > 1.2)
            timers.keep_runs_going(bootstrap.get())
    finally:
        release.set()
    reports = [r for r in caplog.records if getattr(r, "event", None) == "runStalled"]
    assert [(r.runId, r.state, r.lastChange) for r in reports] == [(run_id, stalled["state"], stalled["updatedAt"])]
    assert api.wait(run_id)["counts"]["upgraded"] == 1


def test_a_ring_of_a_group_that_does_not_exist_fails_at_once(api, tenant, emulator):
    app = org_app(tenant)
    status = api.wait(api.start(teamsAppId=app.id, groupId="0b7c5d1e-2f3a-4b6c-8d9e-1a2b3c4d5e6f"), timeout=20)
    assert (status["state"], status["error"]["code"]) == ("failed", "groupNotFound")
    assert "0b7c5d1e-2f3a-4b6c-8d9e-1a2b3c4d5e6f" in status["error"]["message"] and "(groupId)" in status["error"]["message"]
    assert len(emulator.requests(kind="listGroupUsers")) == 1
