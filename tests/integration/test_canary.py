"""Canary runs: the first N targets are decided before any other is upgraded; then the run goes on
by itself, or pauses (the canary failed, or it was asked to) until an operator resumes it."""

from __future__ import annotations

from tests.support import group_chats, org_app, people, tight_limits


def _posts(emulator) -> list:
    return sorted((r for r in emulator.requests() if r.method == "POST" and r.kind == "upgrade"), key=lambda r: r.t)


def _canary_first(emulator, canary: set[str]) -> None:
    """Every upgrade of a canary chat came before every other upgrade."""
    posts = [r for r in _posts(emulator) if r.status == 204]
    first = [r.chat for r in posts[: len(canary)]]
    assert set(first) <= canary, first
    last_canary = max(r.t for r in posts if r.chat in canary)
    assert all(r.t > last_canary for r in posts if r.chat not in canary)


def test_canary_that_passes_goes_on_by_itself(api, app_env, tenant, emulator):
    tight_limits(emulator, app_env, 20)
    app = org_app(tenant)
    chats = group_chats(tenant, people(tenant, 2), 24, {app.id: "1.0.0"})
    ids = [c.id for c in chats]

    run_id = api.start(teamsAppId=app.id, chatIds=ids, canary={"targets": 5})
    status = api.wait(run_id)

    assert status["state"] == "completed"
    assert status["counts"]["upgraded"] == 24
    assert status["canary"] == {
        "targets": 5,
        "maxFailedPercent": 0.0,
        "pause": False,
        "selected": 5,
        "decided": 5,
        "failed": 0,
        "phase": "running",
    }
    assert status["pause"] is None
    _canary_first(emulator, set(ids[:5]))
    assert emulator.upgrades == {c: 1 for c in ids}


def test_canary_that_passes_pauses_when_asked_then_resume_finishes_the_run(api, tenant, emulator):
    app = org_app(tenant)
    chats = group_chats(tenant, people(tenant, 2), 12, {app.id: "1.0.0"})
    ids = [c.id for c in chats]

    run_id = api.start(teamsAppId=app.id, chatIds=ids, canary={"targets": 4, "pause": True})
    paused = api.wait(run_id, until=lambda s: s["state"] == "paused")

    assert paused["pause"]["reason"] == "canaryPassed"
    assert (paused["pause"]["decided"], paused["pause"]["failed"]) == (4, 0)
    assert paused["counts"]["upgraded"] == 4 and paused["counts"]["pending"] == 8
    assert set(emulator.upgrades) == set(ids[:4])

    response = api.act(run_id, "resume")
    assert response.status_code == 202, response.text
    assert response.json()["state"] in ("upgrading", "completed") and response.json()["pause"] is None
    status = api.wait(run_id)

    assert status["state"] == "completed" and status["counts"]["upgraded"] == 12
    assert emulator.upgrades == {c: 1 for c in ids}
    assert api.act(run_id, "resume").json()["error"]["code"] == "runNotPaused"


def test_canary_that_fails_pauses_with_its_figures_and_resume_goes_on(api, tenant, emulator):
    app = org_app(tenant)
    chats = group_chats(tenant, people(tenant, 2), 10, {app.id: "1.0.0"})
    ids = [c.id for c in chats]
    for chat in chats[:2]:
        chat.blocked.add(app.id)  # 2 of the 5 canary chats fail: 40% > 20%

    run_id = api.start(teamsAppId=app.id, chatIds=ids, canary={"targets": 5, "maxFailedPercent": 20})
    paused = api.wait(run_id, until=lambda s: s["state"] == "paused")

    assert paused["pause"]["reason"] == "canaryFailed"
    assert (paused["pause"]["decided"], paused["pause"]["failed"]) == (5, 2)
    assert {f["chatId"] for f in paused["failures"]} == set(ids[:2])
    assert set(emulator.upgrades) == set(ids[2:5])

    assert api.act(run_id, "resume").status_code == 202
    status = api.wait(run_id)
    assert status["state"] == "completed"
    assert (status["counts"]["upgraded"], status["counts"]["failed"]) == (8, 2)


def test_canary_within_its_failure_budget_goes_on(api, tenant, emulator):
    app = org_app(tenant)
    chats = group_chats(tenant, people(tenant, 2), 8, {app.id: "1.0.0"})
    chats[0].blocked.add(app.id)  # 1 of 4 = 25%, allowed up to 25%

    status = api.wait(api.start(teamsAppId=app.id, chatIds=[c.id for c in chats], canary={"targets": 4, "maxFailedPercent": 25}))

    assert status["state"] == "completed" and status["pause"] is None
    assert (status["counts"]["upgraded"], status["counts"]["failed"]) == (7, 1)


def test_discovery_canary_takes_the_first_targets_found_and_holds_the_rest(api, tenant, emulator):
    app = org_app(tenant)
    users = people(tenant, 6)
    chats = group_chats(tenant, users, 15, {app.id: "1.0.0"})  # each chat is listed under all six members

    run_id = api.start(teamsAppId=app.id, canary={"targets": 6, "pause": True})
    paused = api.wait(run_id, until=lambda s: s["state"] == "paused")

    assert paused["canary"]["selected"] == 6 and paused["pause"]["decided"] == 6
    assert len(emulator.upgrades) == 6
    assert paused["counts"]["targets"] == 15 and paused["counts"]["pending"] == 9
    assert api.act(run_id, "resume").status_code == 202
    status = api.wait(run_id)
    assert status["counts"]["upgraded"] == 15
    assert emulator.upgrades == {c.id: 1 for c in chats}


def test_canary_bad_inputs_are_400_with_a_code(api, tenant):
    app = org_app(tenant)
    cases = [
        ({"targets": 0}, "invalidCanary"),
        ({"targets": 10_001}, "invalidCanary"),
        ({"targets": True}, "invalidCanary"),
        ({"targets": 1.5}, "invalidCanary"),
        ({}, "invalidCanary"),
        ({"targets": 5, "maxFailedPercent": 101}, "invalidCanary"),
        ({"targets": 5, "maxFailedPercent": -1}, "invalidCanary"),
        ({"targets": 5, "maxFailedPercent": "5"}, "invalidCanary"),
        ({"targets": 5, "pause": "yes"}, "invalidCanary"),
        ({"targets": 5, "size": 3}, "invalidCanary"),
        ([5], "invalidCanary"),
    ]
    for canary, code in cases:
        response = api.publish({"teamsAppId": app.id, "canary": canary})
        assert response.status_code == 400, canary
        assert response.json()["error"]["code"] == code, canary
    response = api.publish({"teamsAppId": app.id, "canary": {"targets": 5}, "dryRun": True})
    assert (response.status_code, response.json()["error"]["code"]) == (400, "canaryWithDryRun")
