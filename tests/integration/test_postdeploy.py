"""scripts/postdeploy.sh against stand-ins for the Azure CLI and `sleep` (no function app here, and no
waiting): a host that has not indexed graph_notifications yet answers 404 for a while, and the hook
waits it out with back-off instead of failing `azd up`; other errors stop it at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "postdeploy.sh"
KEY = "k3y-Graph-carries-in-its-notification-url"
NOT_INDEXED = "ERROR: Operation returned an invalid status 'Not Found'"
FORBIDDEN = "ERROR: (AuthorizationFailed) The client does not have authorization to perform action"

# Answers `az functionapp function keys set` with the next scripted error until none are left, then
# registers the key; `sleep` records how long it was asked to wait and returns at once.
FAKE = textwrap.dedent(f"""\
    #!{sys.executable}
    import json, os, sys
    path = os.environ["FAKE_STATE"]
    state = json.load(open(path))
    tool, args = os.path.basename(sys.argv[0]), sys.argv[1:]
    code = 0
    if tool == "sleep":
        state["slept"].append(float(args[0]))
    elif args[:4] == ["functionapp", "function", "keys", "set"]:
        state["attempts"] += 1
        if state["errors"]:
            print(state["errors"].pop(0), file=sys.stderr)
            code = 1
        else:
            state["keys"][args[args.index("--function-name") + 1]] = args[args.index("--key-value") + 1]
    else:
        code = 9
    json.dump(state, open(path, "w"))
    sys.exit(code)
""")


@pytest.fixture
def hook(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("az", "sleep"):
        (bin_dir / tool).write_text(FAKE)
        (bin_dir / tool).chmod(0o755)
    state = tmp_path / "state.json"

    def run(errors: list[str], *, key: str = KEY) -> tuple[subprocess.CompletedProcess, dict]:
        state.write_text(json.dumps({"attempts": 0, "errors": errors, "keys": {}, "slept": []}))
        environment = {
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "FAKE_STATE": str(state),
            "AZURE_FUNCTION_APP_NAME": "func-upgrader-abc",
            "AZURE_RESOURCE_GROUP": "rg-prod",
            "NOTIFICATION_FUNCTION_KEY": key,
        }
        result = subprocess.run(["sh", str(SCRIPT)], env=environment, capture_output=True, text=True, timeout=60)
        assert KEY not in result.stdout + result.stderr  # never printed
        return result, json.loads(state.read_text())

    return run


def test_a_host_that_has_not_indexed_the_function_yet_is_waited_for_with_back_off(hook):
    result, state = hook([NOT_INDEXED] * 3)
    assert result.returncode == 0, result.stderr
    assert state["keys"] == {"graph_notifications": KEY} and state["attempts"] == 4
    assert state["slept"] == sorted(state["slept"]) and state["slept"][0] < state["slept"][-1]
    assert result.stdout.count("not indexed yet (404)") == 3 and "Registered the function key" in result.stdout


def test_a_host_that_never_indexes_it_fails_after_a_few_minutes_saying_what_to_run(hook):
    result, state = hook([NOT_INDEXED] * 50)
    assert result.returncode != 0
    assert 120 <= sum(state["slept"]) <= 300 and state["attempts"] == len(state["slept"]) + 1
    assert "azd hooks run postdeploy" in result.stderr and NOT_INDEXED in result.stderr
    assert state["keys"] == {}


def test_any_other_error_stops_at_once(hook):
    result, state = hook([FORBIDDEN])
    assert result.returncode != 0 and FORBIDDEN in result.stderr
    assert state["attempts"] == 1 and state["slept"] == []


def test_without_notifications_nothing_is_registered(hook):
    result, state = hook([], key="")
    assert result.returncode == 0, result.stderr
    assert state["attempts"] == 0 and "Deployed func-upgrader-abc" in result.stdout


def test_both_hooks_retry_the_same_way():
    posix, windows = SCRIPT.read_text(), (ROOT / "scripts" / "postdeploy.ps1").read_text()
    for text in ("--function-name graph_notifications", "--key-name graph", "5, 10, 20, 40, 60, 60, 60, 0", "not ?found|404"):
        assert text in windows, text
    assert "5 10 20 40 60 60 60 0" in posix and "not ?found|404" in posix and "--function-name graph_notifications" in posix
    assert "azd hooks run postdeploy" in posix and "azd hooks run postdeploy" in windows
