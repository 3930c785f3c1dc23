"""GET /api/runs: the run history, newest first, paged, filtered by app and state; and the CLI verbs
that list and steer runs."""

from __future__ import annotations

import io

from tests.support import group_chats, org_app, people
from upgrader_cli.main import run as cli


def _all_pages(api, **params) -> list[dict]:
    response = api.runs(**params)
    assert response.status_code == 200, response.text
    page = response.json()
    found = list(page["value"])
    while page["nextLink"]:
        follow = api.session.get(page["nextLink"])
        assert follow.status_code == 200, follow.text
        page = follow.json()
        found += page["value"]
    return found


def test_history_pages_newest_first_and_filters_by_app_and_state(api, tenant, emulator):
    first, second = org_app(tenant, name="First"), org_app(tenant, name="Second")
    users = people(tenant, 2)
    chats = group_chats(tenant, users, 2, {first.id: "1.0.0", second.id: "1.0.0"})
    ids = [c.id for c in chats]
    started = []
    for app, extra in ((first, {}), (second, {}), (first, {"version": "0.9.0"}), (second, {"dryRun": True}), (first, {})):
        run_id = api.start(teamsAppId=app.id, chatIds=ids, **extra)
        api.wait(run_id)
        started.append(run_id)

    every = _all_pages(api, top="2")
    assert [r["runId"] for r in every] == started[::-1]
    assert all("failures" not in r for r in every)
    assert every[0] == {k: v for k, v in api.status(started[-1]).items() if k != "failures"}
    assert [r["runId"] for r in _all_pages(api, appId=first.id)] == [started[4], started[2], started[0]]
    failed = _all_pages(api, state="failed")
    assert [r["runId"] for r in failed] == [started[2]] and failed[0]["error"]["code"] == "versionNotPublished"
    assert [r["runId"] for r in _all_pages(api, appId=second.id, state="completed")] == [started[3], started[1]]
    assert _all_pages(api, appId="00000000-0000-0000-0000-000000000000") == []
    page = api.runs(top="1").json()
    assert len(page["value"]) == 1 and "continuationToken=" in page["nextLink"]
    assert api.runs().json()["value"] == every  # read again: the stored documents of finished runs are the same


def test_history_rejects_bad_parameters_with_a_code(api):
    cases = [
        ({"top": "0"}, "invalidTop"),
        ({"top": "101"}, "invalidTop"),
        ({"top": "ten"}, "invalidTop"),
        ({"top": "²"}, "invalidTop"),
        ({"state": "done"}, "invalidState"),
        ({"appId": "not-a-guid"}, "invalidAppId"),
        ({"continuationToken": "abc"}, "invalidContinuationToken"),
        ({"skip": "5"}, "unknownParameter"),
    ]
    for params, code in cases:
        response = api.runs(**params)
        assert response.status_code == 400, params
        assert response.json()["error"]["code"] == code, params
    assert api.runs().json() == {"value": [], "nextLink": None}


def test_cli_lists_runs_cancels_and_retries(api, app_env, tenant, emulator):
    from tests.support import tight_limits

    tight_limits(emulator, app_env, 4)
    app = org_app(tenant)
    chats = group_chats(tenant, people(tenant, 2), 20, {app.id: "1.0.0"})
    url = ["--url", api.base_url, "--interval", "0.1"]
    out = io.StringIO()
    assert cli(["publish", "--app-id", app.id, *[f"--chat={c.id}" for c in chats], *url], stdout=out) == 0
    run_id = out.getvalue().split()[1]
    api.wait(run_id, until=lambda s: s["counts"]["targets"] == 20)  # laid out: there is something to retry

    out = io.StringIO()
    assert cli(["cancel", run_id, *url], stdout=out) == 0
    assert f"Run {run_id} is cancel" in out.getvalue()
    out = io.StringIO()
    assert cli(["status", run_id, "--watch", *url], stdout=out) == 4  # cancelled
    assert "Cancelled by function key" in out.getvalue()
    assert f"teams-upgrader retry {run_id}" in out.getvalue()

    out = io.StringIO()
    assert cli(["runs", "--app-id", app.id, *url], stdout=out) == 0
    table = out.getvalue()
    assert run_id in table and "cancelled" in table and "function key (api)" in table

    out = io.StringIO()
    assert cli(["retry", run_id, "--watch", *url], stdout=out) == 0
    assert f"retries run {run_id}" in out.getvalue() and "State: completed" in out.getvalue()
    assert all(c.installed[app.id] == "1.1.0" for c in chats)

    out, err = io.StringIO(), io.StringIO()
    assert cli(["resume", run_id, *url], stdout=out, stderr=err) == 2
    assert "runNotPaused" in err.getvalue()


def test_cli_watch_stops_at_a_paused_canary_and_says_how_to_go_on(api, tenant, emulator):
    app = org_app(tenant)
    chats = group_chats(tenant, people(tenant, 2), 6, {app.id: "1.0.0"})
    url = ["--url", api.base_url, "--interval", "0.1"]
    out = io.StringIO()
    args = ["publish", "--app-id", app.id, *[f"--chat={c.id}" for c in chats], "--canary", "2", "--pause", "--watch"]
    assert cli([*args, *url], stdout=out) == 3  # paused
    text = out.getvalue()
    assert "State: paused" in text and "Paused: the canary passed" in text
    run_id = text.split()[1]
    assert f"teams-upgrader resume {run_id}" in text

    out = io.StringIO()
    assert cli(["resume", run_id, "--watch", *url], stdout=out) == 0
    assert "State: completed" in out.getvalue()
    err = io.StringIO()
    assert cli(["publish", "--app-id", app.id, "--pause", *url], stdout=io.StringIO(), stderr=err) == 2
    assert "--canary" in err.getvalue()


def test_a_run_published_by_manifest_id_is_in_its_apps_history(api, tenant, emulator):
    app = tenant.add_app("By manifest", versions=("1.0.0",), external_id="com.contoso.manifest")
    run_id = api.start(externalId="com.contoso.manifest", dryRun=True)
    api.wait(run_id)
    listed = api.runs(appId=app.id).json()["value"]
    assert [r["runId"] for r in listed] == [run_id] and listed[0]["teamsAppId"] == app.id
