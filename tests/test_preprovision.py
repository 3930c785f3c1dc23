"""scripts/preprovision.sh against stand-ins for the Azure CLI and azd (no tenant here): with
API_AUTH=entra it creates the API's app registration once, with both app roles, and records its id;
a soft-deleted vault of the environment is recovered instead of colliding."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "preprovision.sh"
NEW_APP = "0a1b2c3d-0000-4000-8000-0000000000aa"

FAKE = textwrap.dedent(f"""\
    #!{sys.executable}
    import json, os, sys
    path = os.environ["FAKE_STATE"]
    state = json.load(open(path))
    tool, args = os.path.basename(sys.argv[0]), sys.argv[1:]
    state["calls"].append([tool, *args])
    def arg(name):
        return args[args.index(name) + 1] if name in args else None
    out, code = "", 0
    if tool == "azd" and args[:2] == ["env", "set"]:
        state["env"][args[2]] = args[3]
    elif args[:3] == ["ad", "app", "list"]:
        out = next((a["appId"] for a in state["apps"] if a["displayName"] == arg("--display-name")), "")
    elif args[:3] == ["ad", "app", "show"]:
        code = 0 if any(a["appId"] == arg("--id") for a in state["apps"]) else 3
    elif args[:3] == ["ad", "app", "create"]:
        roles = json.load(open(arg("--app-roles")[1:]))
        state["apps"].append({{"appId": "{NEW_APP}", "displayName": arg("--display-name"), "roles": roles}})
        out = "{NEW_APP}"
    elif args[:3] == ["ad", "app", "update"]:
        app = next(a for a in state["apps"] if a["appId"] == arg("--id"))
        app["identifierUris"] = [arg("--identifier-uris")]
    elif args[:3] == ["ad", "sp", "show"]:
        code = 0 if arg("--id") in state["sps"] else 3
    elif args[:3] == ["ad", "sp", "create"]:
        state["sps"].append(arg("--id"))
    elif args[:2] == ["keyvault", "list-deleted"]:
        wanted = arg("--query").split("'")[1]
        out = wanted if wanted in state["deletedVaults"] else ""
    else:
        code = 9
    json.dump(state, open(path, "w"))
    print(out)
    sys.exit(code)
""")


@pytest.fixture
def tools(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("az", "azd"):
        (bin_dir / tool).write_text(FAKE)
        (bin_dir / tool).chmod(0o755)
    state = tmp_path / "state.json"

    def run(env: dict, *, apps=(), sps=(), deleted=()) -> tuple[subprocess.CompletedProcess, dict]:
        state.write_text(
            json.dumps({"calls": [], "env": {}, "apps": list(apps), "sps": list(sps), "deletedVaults": list(deleted)})
        )
        environment = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_STATE": str(state), "AZURE_ENV_NAME": "prod", **env}
        result = subprocess.run(["sh", str(SCRIPT)], env=environment, capture_output=True, text=True, timeout=60)
        return result, json.loads(state.read_text())

    return run


def test_with_function_keys_no_app_registration_is_touched(tools):
    result, state = tools({})
    assert result.returncode == 0, result.stderr
    assert [c for c in state["calls"] if c[:2] == ["az", "ad"]] == []
    assert state["env"] == {"KEY_VAULT_CREATE_MODE": "default"}


def test_entra_creates_the_registration_once_with_both_roles_and_records_it(tools):
    result, state = tools({"API_AUTH": "entra"})
    assert result.returncode == 0, result.stderr
    [app] = state["apps"]
    assert app["displayName"] == "teams-app-upgrader-api-prod"
    assert {r["value"] for r in app["roles"]} == {"Upgrades.Run", "Upgrades.Read"}
    assert all(set(r["allowedMemberTypes"]) == {"User", "Application"} for r in app["roles"])
    assert app["identifierUris"] == [f"api://{NEW_APP}"]
    assert state["sps"] == [NEW_APP]
    assert state["env"]["API_AUTH_CLIENT_ID"] == NEW_APP

    # a second provision (the id lost from the environment) finds it by name and creates nothing
    again, state = tools({"API_AUTH": "entra"}, apps=state["apps"], sps=state["sps"])
    assert again.returncode == 0, again.stderr
    assert len(state["apps"]) == 1 and not any(c[:3] == ["az", "ad", "app"] and "create" in c for c in state["calls"])
    assert state["env"]["API_AUTH_CLIENT_ID"] == NEW_APP


def test_a_given_client_id_is_used_as_is_and_a_wrong_one_stops_the_provision(tools):
    mine = {"appId": "11111111-0000-4000-8000-000000000001", "displayName": "ours"}
    result, state = tools({"API_AUTH": "ENTRA", "API_AUTH_CLIENT_ID": mine["appId"]}, apps=[mine])
    assert result.returncode == 0, result.stderr
    assert "API_AUTH_CLIENT_ID" not in state["env"] and len(state["apps"]) == 1
    wrong, _ = tools({"API_AUTH": "entra", "API_AUTH_CLIENT_ID": "22222222-0000-4000-8000-000000000002"})
    assert wrong.returncode != 0 and "names no app registration" in wrong.stderr


def test_a_soft_deleted_vault_of_the_environment_is_recovered(tools):
    result, state = tools({"AZURE_KEY_VAULT_NAME": "kv-upg-abc"}, deleted=["kv-upg-abc"])
    assert result.returncode == 0, result.stderr
    assert state["env"]["KEY_VAULT_CREATE_MODE"] == "recover"
    result, state = tools({"AZURE_KEY_VAULT_NAME": "kv-upg-abc"}, deleted=["kv-upg-other"])
    assert state["env"]["KEY_VAULT_CREATE_MODE"] == "default"


def test_both_hooks_are_wired_and_do_the_same_calls():
    azure_yaml = (ROOT / "azure.yaml").read_text()
    assert "run: ./scripts/preprovision.sh" in azure_yaml and "run: ./scripts/preprovision.ps1" in azure_yaml
    posix, windows = SCRIPT.read_text(), (ROOT / "scripts" / "preprovision.ps1").read_text()
    for call in ("az ad app create", "az ad app list", "az ad app update", "az ad sp create", "azd env set API_AUTH_CLIENT_ID"):
        assert call in posix and call in windows, call
    for option in ("--identifier-uris", "api.requestedAccessTokenVersion=2", "KEY_VAULT_CREATE_MODE", "list-deleted"):
        assert option in posix and option in windows, option
