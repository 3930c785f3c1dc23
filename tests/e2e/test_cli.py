"""teams-upgrader against the local stack: publish, watch to completion, and its error cases."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys

import pytest

from tests.support import group_chats, org_app, people, start_host
from upgrader_cli.main import run


def cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run(list(args), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def url(host) -> str:
    return host.base_url


def test_publish_and_watch_to_completion(url, tenant, emulator):
    app = org_app(tenant)
    chats = group_chats(tenant, people(tenant, 3), 3, {app.id: "1.0.0"})

    code, out, err = cli("publish", "--app-id", app.id, "--watch", "--url", url, "--interval", "0.1")

    assert code == 0, err
    assert "started" in out and "State: completed" in out
    assert f"  {'upgraded':<16}{3:>10}" in out
    assert "completed   [########################] 3/3 upgraded=3" in out  # the last progress line
    assert emulator.upgrades == {c.id: 1 for c in chats}


def test_failed_chats_make_a_nonzero_exit_and_are_listed(url, tenant, emulator, tmp_path):
    app = org_app(tenant)
    blocked, fine = group_chats(tenant, people(tenant, 2), 2, {app.id: "1.0.0"})
    blocked.blocked.add(app.id)
    chats_file = tmp_path / "chats.txt"
    chats_file.write_text(f"# chats to upgrade\n{blocked.id}\n\n{fine.id}\n")

    code, out, _ = cli(
        "publish", "--app-id", app.id, "--chats-file", str(chats_file), "--watch", "--url", url, "--interval", "0.1"
    )

    assert code == 1
    assert "Failed chats (1):" in out and f"{blocked.id}  403 Forbidden: App is blocked" in out


def test_status_as_json_and_dry_run(url, tenant, emulator):
    app = org_app(tenant)
    group_chats(tenant, people(tenant, 2), 2, {app.id: "1.0.0"})
    code, out, _ = cli("publish", "--app-id", app.id, "--dry-run", "--watch", "--url", url, "--interval", "0.1")
    assert code == 0
    run_id = out.split("Run ", 1)[1].split(" ", 1)[0]
    code, out, _ = cli("status", run_id, "--json", "--url", url)
    status = json.loads(out)
    assert status["dryRun"] is True and status["counts"]["wouldUpgrade"] == 2
    assert not emulator.upgrades


def test_api_errors_are_one_clear_line(url):
    code, out, err = cli(
        "publish", "--app-id", "0f0f0f0f-0000-4000-8000-000000000000", "--chat", "19:a/b@thread.v2", "--url", url
    )
    assert code == 2 and out == ""
    assert err.strip().startswith("teams-upgrader: error: invalidChatId: chatIds[0]")
    assert err.count("\n") == 1

    code, _, err = cli("status", "0" * 32, "--url", url)
    assert code == 2 and "runNotFound" in err

    code, _, err = cli("status", "0" * 32, "--url", "not a url")
    assert code == 2 and "--url must be an http(s) URL" in err


def test_unreachable_url_is_reported(app_env):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    code, _, err = cli("status", "0" * 32, "--url", f"http://127.0.0.1:{port}")
    assert code == 2 and "cannot reach" in err


def test_a_wrong_function_key_is_reported_and_never_echoed(app_env, tenant, emulator):
    host = start_host(function_key="right-key")
    try:
        code, out, err = cli("status", "0" * 32, "--url", host.base_url, "--key", "wrong-key-123")
        assert code == 2 and "function key was rejected (401)" in err
        assert "wrong-key-123" not in out + err
        app = org_app(tenant)
        code, out, err = cli("publish", "--app-id", app.id, "--url", host.base_url, "--key", "right-key")
        assert code == 0 and "right-key" not in out + err
    finally:
        host.stop()


def test_console_script_is_installed(url, app_env):
    script = os.path.join(os.path.dirname(sys.executable), "teams-upgrader")
    env = {**os.environ, "UPGRADER_URL": url}
    result = subprocess.run([script, "status", "1" * 32], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 2 and "runNotFound" in result.stderr


def test_publish_for_one_team_and_a_summary_per_scope(app_env, tenant, emulator):
    app_env.setenv("UPGRADE_SCOPES", "chat,team,personal")
    app = org_app(tenant)
    users = people(tenant, 2)
    team = tenant.add_team(users, installed={app.id: "1.0.0"})
    chat = group_chats(tenant, users, 1, {app.id: "1.0.0"})[0]
    tenant.users[users[0]].installed[app.id] = "1.0.0"
    tenant.users[users[0]].blocked.add(app.id)
    host = start_host()
    try:
        url = host.base_url
        code, out, err = cli("publish", "--app-id", app.id, "--scope", "team", "--team", team.id, "--watch", "--url", url)
        assert code == 0, err
        assert emulator.upgrades == {team.id: 1}
        assert f"  {'outcome':<16}{'teams':>10}" in out and f"  {'upgraded':<16}{1:>10}" in out

        code, out, err = cli("publish", "--app-id", app.id, "--chat", chat.id, "--user", users[0], "--watch", "--url", url)
        assert code == 1  # the user's policy blocks the app
        header = next(line for line in out.splitlines() if line.strip().startswith("outcome"))
        assert header.split() == ["outcome", "chats", "users", "total"]
        assert f"personal {users[0]}  403 Forbidden: App is blocked" in out

        code, _, err = cli("publish", "--app-id", app.id, "--scope", "team", "--chat", chat.id, "--url", url)
        assert code == 2 and "chat scope but --scope does not name it" in err
    finally:
        host.stop()


def test_a_rollout_from_a_file_is_followed_through_short_waits_and_stops_at_a_pause_then_a_bake(url, tenant, emulator, tmp_path):
    app = org_app(tenant)
    group_chats(tenant, people(tenant, 2), 6, {app.id: "1.0.0"})
    plan = tmp_path / "plan.json"
    steps = [{"upgrade": {"targets": 2}}, {"pause": {"duration": "PT2S"}}, {"upgrade": {"targets": 4}}, {"pause": {}}]
    steps += [{"upgrade": {"targets": 5}}, {"pause": {"duration": "PT1H"}}]
    plan.write_text(json.dumps({"rollout": {"steps": steps, "maxFailedPercent": 0}}))

    code, out, _ = cli("publish", "--app-id", app.id, "--rollout", str(plan), "--watch", "--url", url, "--interval", "0.2")
    assert code == 3, out  # through the 2 s bake, then paused for an operator
    assert "rollout: step 4 of 6 (pause for an operator): paused" in out
    run_id = out.split("Run ", 1)[1].split(" ", 1)[0]
    assert f"teams-upgrader resume {run_id}" in out

    code, out, _ = cli("resume", run_id, "--watch", "--url", url, "--interval", "0.2")
    assert code == 5, out  # a bake of an hour: it stops watching and says until when
    assert "rollout: step 6 of 6 (bake PT1H): waiting (bake) until" in out
    assert "Waiting for a bake until" in out and f"To go on now: teams-upgrader resume {run_id}" in out

    code, out, _ = cli("resume", run_id, "--watch", "--url", url, "--interval", "0.2")
    assert code == 0 and "State: completed" in out and "rollout: through all 6 steps" in out
    assert len(emulator.upgrades) == 6


def test_a_pilot_ring_and_a_bad_plan_file(url, tenant, emulator, tmp_path):
    app = org_app(tenant)
    pilots = people(tenant, 2)
    ring = tenant.add_group(pilots)
    group_chats(tenant, pilots, 2, {app.id: "1.0.0"})
    group_chats(tenant, people(tenant, 2), 3, {app.id: "1.0.0"})
    code, out, _ = cli("publish", "--app-id", app.id, "--group", ring, "--watch", "--url", url, "--interval", "0.2")
    assert code == 0 and f"Pilot ring: the members of group {ring}" in out and len(emulator.upgrades) == 2

    bad = tmp_path / "plan.json"
    bad.write_text(json.dumps({"steps": [{"upgrade": {"percent": 0}}]}))
    code, _, err = cli("publish", "--app-id", app.id, "--rollout", str(bad), "--url", url)
    assert code == 2 and "invalidRollout" in err and "rollout.steps[0].upgrade.percent" in err
