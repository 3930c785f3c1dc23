"""Operators stop runs and retry what they did not upgrade: cancel during discovery, during
upgrades and while paused (no upgrade sent after the answer, exact counts), retry of failed and
cancelled targets, and the 404s and 409s of each route."""

from __future__ import annotations

import time

from tests.support import group_chats, org_app, people, tight_limits, wait_for

ZERO_RUN = "0" * 32


def _posts(emulator) -> list:
    return [r for r in emulator.requests() if r.method == "POST" and r.kind.startswith("upgrade")]


def _cancel(api, run_id: str) -> tuple[dict, float]:
    response = api.act(run_id, "cancel")
    answered = time.time()
    assert response.status_code == 202, response.text
    return response.json(), answered


def _cancel_midway(api, app_env, tenant, emulator, *, rps: int, size: int, after: int):
    """Starts an explicit run over `size` outdated chats and cancels it once `after` of them are upgraded."""
    tight_limits(emulator, app_env, rps)
    app = org_app(tenant)
    chats = group_chats(tenant, people(tenant, 2), size, {app.id: "1.0.0"})
    run_id = api.start(teamsAppId=app.id, chatIds=[c.id for c in chats])
    wait_for(lambda: len(emulator.upgrades) >= after)
    answer, answered = _cancel(api, run_id)
    return app, chats, run_id, answer, answered, api.wait(run_id)


def _assert_counts_add_up(status: dict) -> None:
    counts = status["counts"]
    assert counts["targets"] == sum(v for k, v in counts.items() if k != "targets")
    for scope_counts in status["countsByScope"].values():
        assert scope_counts["targets"] == sum(v for k, v in scope_counts.items() if k != "targets")


def test_cancel_while_upgrading_sends_no_upgrade_after_the_answer(api, app_env, tenant, emulator):
    app, chats, run_id, answer, answered, status = _cancel_midway(api, app_env, tenant, emulator, rps=6, size=40, after=4)

    assert answer["state"] in ("cancelling", "cancelled")
    assert answer["cancelled"]["by"] == {"objectId": None, "name": "function key"}
    assert [r for r in _posts(emulator) if r.t > answered] == []
    assert status["state"] == "cancelled"
    counts = status["counts"]
    assert counts["pending"] == 0 and counts["cancelled"] > 0
    assert counts["upgraded"] == len(emulator.upgrades) == sum(1 for c in chats if c.installed[app.id] == "1.1.0")
    assert counts["upgraded"] + counts["cancelled"] == 40
    _assert_counts_add_up(status)
    assert all(n == 1 for n in emulator.upgrades.values())

    again = api.act(run_id, "cancel")  # cancelling twice is harmless
    assert again.status_code == 202 and again.json()["state"] == "cancelled"
    assert again.json()["counts"] == counts


def test_cancel_during_discovery_ends_every_found_target_cancelled(api, app_env, tenant, emulator):
    tight_limits(emulator, app_env, 4)
    app = org_app(tenant)
    users = people(tenant, 24)
    for user in users:
        group_chats(tenant, [user, users[0]], 1, {app.id: "1.0.0"})
    run_id = api.start(teamsAppId=app.id)
    api.wait(run_id, until=lambda s: s["state"] == "discovering" and s["discovery"]["usersScanned"] >= 2)

    _, answered = _cancel(api, run_id)
    status = api.wait(run_id)

    assert status["state"] == "cancelled"
    assert [r for r in _posts(emulator) if r.t > answered] == []
    assert status["counts"]["pending"] == 0
    assert status["counts"]["upgraded"] == len(emulator.upgrades)
    assert status["counts"]["upgraded"] + status["counts"]["cancelled"] == status["counts"]["targets"]
    assert status["discovery"]["usersScanned"] < 24  # discovery stopped too
    _assert_counts_add_up(status)


def test_queued_batches_of_a_cancelled_run_make_no_graph_call(api, app_env, tenant, emulator):
    *_, answered, status = _cancel_midway(api, app_env, tenant, emulator, rps=3, size=60, after=1)

    late_gets = [r for r in emulator.requests(kind="getInstalledApps") if r.t > answered + 0.5]
    assert late_gets == []  # batches that became visible later ended their chats without a GET
    assert status["counts"]["cancelled"] >= 40


def test_retry_reruns_exactly_the_failed_and_cancelled_targets_to_the_newest_version(api, app_env, tenant, emulator):
    tight_limits(emulator, app_env, 6)
    app = org_app(tenant)
    chats = group_chats(tenant, people(tenant, 2), 30, {app.id: "1.0.0"})
    blocked = chats[:3]
    for chat in blocked:
        chat.blocked.add(app.id)  # an app permission policy: these fail, one by one
    run_id = api.start(teamsAppId=app.id, chatIds=[c.id for c in chats])
    refused = lambda: {r.chat for r in emulator.requests(status=403)}  # noqa: E731
    wait_for(lambda: len(emulator.upgrades) >= 6 and refused() == {c.id for c in blocked})
    _cancel(api, run_id)
    first = api.wait(run_id)
    failed = {f["chatId"] for f in api.status(run_id)["failures"]}
    assert failed == {c.id for c in blocked}
    left = {c.id for c in chats if c.installed[app.id] == "1.0.0"}
    assert len(left) == first["counts"]["failed"] + first["counts"]["cancelled"]

    for chat in blocked:
        chat.blocked.discard(app.id)
    tenant.publish(app.id, "1.2.0")  # the retry targets the newest version now
    before_retry = time.time()
    response = api.act(run_id, "retry")
    assert response.status_code == 202, response.text
    retry_id = response.json()["runId"]
    assert response.headers["Location"] == response.json()["statusUrl"]
    assert response.json()["statusUrl"].endswith(f"/api/runs/{retry_id}")
    status = api.wait(retry_id)

    assert status["retryOf"] == run_id and status["trigger"] == "retry"
    assert status["startedBy"]["name"] == "function key"
    assert status["targetVersion"] == "1.2.0"
    assert status["state"] == "completed"
    assert status["counts"]["targets"] == len(left)
    assert status["counts"]["upgraded"] == len(left)
    upgraded_by_retry = {r.chat for r in _posts(emulator) if r.t > before_retry}
    assert upgraded_by_retry == left
    assert api.act(retry_id, "retry").json()["error"]["code"] == "nothingToRetry"


def test_every_operator_route_answers_404_and_409_with_a_code(api, app_env, tenant, emulator):
    app = org_app(tenant)
    chats = group_chats(tenant, people(tenant, 2), 2, {app.id: "1.0.0"})
    for action in ("cancel", "resume", "retry"):
        for run_id in (ZERO_RUN, "not-a-run"):
            response = api.act(run_id, action)
            assert response.status_code == 404, (action, response.text)
            assert response.json()["error"]["code"] == "runNotFound"

    tight_limits(emulator, app_env, 2)
    running = api.start(teamsAppId=app.id, chatIds=[c.id for c in chats])
    response = api.act(running, "retry")
    assert (response.status_code, response.json()["error"]["code"]) == (409, "runNotFinished")
    response = api.act(running, "resume")
    assert (response.status_code, response.json()["error"]["code"]) == (409, "runNotPaused")
    done = api.wait(running)
    assert done["state"] == "completed"
    response = api.act(running, "cancel")
    assert (response.status_code, response.json()["error"]["code"]) == (409, "runFinished")
    response = api.act(running, "retry")
    assert (response.status_code, response.json()["error"]["code"]) == (409, "nothingToRetry")


def test_a_paused_run_counts_as_the_apps_running_run(api, tenant, emulator):
    app = org_app(tenant)
    chats = group_chats(tenant, people(tenant, 2), 6, {app.id: "1.0.0"})
    paused = api.start(teamsAppId=app.id, chatIds=[c.id for c in chats], canary={"targets": 2, "pause": True})
    api.wait(paused, until=lambda s: s["state"] == "paused")

    other = api.wait(api.start(teamsAppId=app.id, chatIds=[chats[-1].id]))

    assert other["state"] == "failed" and other["error"]["code"] == "runInProgress"
    _, answered = _cancel(api, paused)
    status = api.wait(paused)
    assert [r for r in _posts(emulator) if r.t > answered] == []
    assert status["state"] == "cancelled"
    assert status["counts"]["upgraded"] == 2 and status["counts"]["cancelled"] == 4
    assert len(emulator.upgrades) == 2


def test_every_process_has_seen_a_cancel_by_the_time_it_is_answered():
    from shared.steering.commands import CANCEL_SEEN, STEERING_STALE_OK
    from shared.stores.run_cache import STEERING_TTL

    # a process trusts its cached steering for STEERING_TTL, and up to STEERING_STALE_OK while another
    # thread re-reads it: the answer must wait longer than either
    assert STEERING_TTL < STEERING_STALE_OK < CANCEL_SEEN
