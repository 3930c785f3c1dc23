"""scripts/preprovision.sh against stand-ins for the Azure CLI and azd (no tenant here): with
API_AUTH=entra it creates the API's app registration once, with both app roles, and records its id,
or uses a given one without reading the directory; a soft-deleted vault of the environment is found
without any azd output and recovered instead of colliding."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "preprovision.sh"
NEW_APP = "0a1b2c3d-0000-4000-8000-0000000000aa"
SUBSCRIPTION = "5d1e0000-0000-4000-8000-00000000cafe"
REFUSED = "Insufficient privileges to complete the operation."

# Answers exactly the calls the script makes, from a JSON state file; `--query` is evaluated with
# JMESPath, as the Azure CLI does, and printed as `--output tsv` prints it.
FAKE = textwrap.dedent(f"""\
    #!{sys.executable}
    import json, os, sys
    import jmespath
    path = os.environ["FAKE_STATE"]
    state = json.load(open(path))
    tool, args = os.path.basename(sys.argv[0]), sys.argv[1:]
    state["calls"].append([tool, *args])
    def arg(name):
        return args[args.index(name) + 1] if name in args else None
    def tsv(value):
        values = value if isinstance(value, list) else [value]
        return "\\n".join("" if v is None else str(v) for v in values)
    out, code = "", 0
    if tool == "azd" and args[:2] == ["env", "set"]:
        state["env"][args[2]] = args[3]
    elif args[:1] == ["ad"] and state["refuseDirectory"]:
        print(f"ERROR: {REFUSED}", file=sys.stderr)
        code = 1
    elif args[:3] == ["ad", "app", "list"]:
        out = next((a["appId"] for a in state["apps"] if a["displayName"] == arg("--display-name")), "")
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
    elif args[:2] == ["keyvault", "list-deleted"] and arg("--resource-type") == "vault":
        subscription = next((a.split("=", 1)[1] for a in args if a.startswith("--subscription=")), state["signedInSubscription"])
        vaults = [v for v in state["deletedVaults"] if v["id"].startswith(f"/subscriptions/{{subscription}}/")]
        out = tsv(jmespath.search(arg("--query"), vaults)) if arg("--query") else json.dumps(vaults)
    else:
        code = 9
    json.dump(state, open(path, "w"))
    print(out)
    sys.exit(code)
""")


def deleted_vault(name: str, *, env: str | None = "prod", location: str = "eastus", subscription: str = SUBSCRIPTION) -> dict:
    """One entry of `az keyvault list-deleted --resource-type vault`, as the CLI prints it."""
    group = f"rg-{env or 'elsewhere'}"
    return {
        "id": f"/subscriptions/{subscription}/providers/Microsoft.KeyVault/locations/{location}/deletedVaults/{name}",
        "name": name,
        "properties": {
            "deletionDate": "2026-01-10T08:00:00+00:00",
            "location": location,
            "purgeProtectionEnabled": True,
            "scheduledPurgeDate": "2026-01-17T08:00:00+00:00",
            "tags": {"azd-env-name": env} if env else {},
            "vaultId": f"/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.KeyVault/vaults/{name}",
        },
        "type": "Microsoft.KeyVault/deletedVaults",
    }


@pytest.fixture
def tools(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("az", "azd"):
        (bin_dir / tool).write_text(FAKE)
        (bin_dir / tool).chmod(0o755)
    state = tmp_path / "state.json"

    def run(env: dict, *, apps=(), sps=(), deleted=(), refuse_directory=False) -> tuple[subprocess.CompletedProcess, dict]:
        state.write_text(
            json.dumps(
                {
                    "calls": [],
                    "env": {},
                    "apps": list(apps),
                    "sps": list(sps),
                    "deletedVaults": list(deleted),
                    "refuseDirectory": refuse_directory,
                    "signedInSubscription": SUBSCRIPTION,
                }
            )
        )
        environment = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_STATE": str(state), "AZURE_ENV_NAME": "prod", **env}
        result = subprocess.run(["sh", str(SCRIPT)], env=environment, capture_output=True, text=True, timeout=60)
        return result, json.loads(state.read_text())

    return run


def directory_calls(state: dict) -> list[list[str]]:
    return [c for c in state["calls"] if c[:2] == ["az", "ad"]]


def test_with_function_keys_no_app_registration_is_touched(tools):
    result, state = tools({})
    assert result.returncode == 0, result.stderr
    assert directory_calls(state) == []
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


def test_a_given_client_id_is_used_without_reading_the_directory(tools):
    given = "11111111-0000-4000-8000-000000000001"
    # the pipeline's identity may not read the directory: nothing asks it to
    result, state = tools({"API_AUTH": "ENTRA", "API_AUTH_CLIENT_ID": given}, refuse_directory=True)
    assert result.returncode == 0, result.stderr
    assert directory_calls(state) == []
    assert "API_AUTH_CLIENT_ID" not in state["env"] and given in result.stdout


def test_a_client_id_that_is_no_guid_stops_the_provision_before_any_call(tools):
    result, state = tools({"API_AUTH": "entra", "API_AUTH_CLIENT_ID": "teams-app-upgrader-api"})
    assert result.returncode != 0 and "is not a client id" in result.stderr
    assert state["calls"] == []


def test_a_refused_directory_lookup_is_reported_as_such_with_what_to_do(tools):
    result, state = tools({"API_AUTH": "entra"}, refuse_directory=True)
    assert result.returncode != 0
    assert "Entra ID refused" in result.stderr and "may not read or change app registrations" in result.stderr
    assert "API_AUTH_CLIENT_ID" in result.stderr and REFUSED in result.stderr
    [lookup] = directory_calls(state)  # stopped there: no create attempted, nothing recorded
    assert lookup[:4] == ["az", "ad", "app", "list"]
    assert state["env"] == {}


def test_the_environments_deleted_vault_is_recovered_without_any_azd_output(tools):
    ours, other_env, other_region = (
        deleted_vault("kv-upg-ours"),
        deleted_vault("kv-upg-theirs", env="staging"),
        deleted_vault("kv-upg-westeu", location="westeurope"),  # the name derives from the region: not ours
    )
    env = {"AZURE_LOCATION": "eastus", "AZURE_SUBSCRIPTION_ID": SUBSCRIPTION}  # no AZURE_KEY_VAULT_NAME: azd down removed it
    result, state = tools(env, deleted=[other_env, other_region, ours])
    assert result.returncode == 0, result.stderr
    assert state["env"]["KEY_VAULT_CREATE_MODE"] == "recover"
    assert "kv-upg-ours" in result.stdout
    [listing] = [c for c in state["calls"] if c[1:3] == ["keyvault", "list-deleted"]]
    assert f"--subscription={SUBSCRIPTION}" in listing  # azd's subscription, not the CLI's default one


def test_a_deleted_vault_is_found_by_its_resource_group_when_its_tags_are_gone(tools):
    untagged = deleted_vault("kv-upg-ours", env=None)
    untagged["properties"]["vaultId"] = untagged["properties"]["vaultId"].replace("rg-elsewhere", "rg-prod")
    result, state = tools({"AZURE_LOCATION": "eastus"}, deleted=[untagged])
    assert result.returncode == 0, result.stderr
    assert state["env"]["KEY_VAULT_CREATE_MODE"] == "recover"


@pytest.mark.parametrize(
    "deleted",
    [
        [],
        [deleted_vault("kv-upg-theirs", env="staging")],
        [deleted_vault("kv-upg-westeu", location="westeurope")],
        [deleted_vault("kv-upg-ours", subscription="99990000-0000-4000-8000-000000000000")],
        [deleted_vault("kv-other-ours")],  # not one this template names
    ],
    ids=["none", "another environment", "another region", "another subscription", "another naming"],
)
def test_no_vault_of_this_environment_means_a_new_one(tools, deleted):
    result, state = tools({"AZURE_LOCATION": "eastus", "AZURE_SUBSCRIPTION_ID": SUBSCRIPTION}, deleted=deleted)
    assert result.returncode == 0, result.stderr
    assert state["env"]["KEY_VAULT_CREATE_MODE"] == "default"


def test_both_hooks_are_wired_and_do_the_same_calls():
    azure_yaml = (ROOT / "azure.yaml").read_text()
    assert "run: ./scripts/preprovision.sh" in azure_yaml and "run: ./scripts/preprovision.ps1" in azure_yaml
    posix, windows = SCRIPT.read_text(), (ROOT / "scripts" / "preprovision.ps1").read_text()
    for call in ("az ad app create", "az ad app list", "az ad app update", "az ad sp create", "azd env set API_AUTH_CLIENT_ID"):
        assert call in posix.replace("directory az", "az") and call in windows.replace("Invoke-Directory ", "az "), call
    for option in ("--identifier-uris", "api.requestedAccessTokenVersion=2", "KEY_VAULT_CREATE_MODE", "list-deleted"):
        assert option in posix and option in windows, option
    for text in (
        "--subscription=",
        "azd-env-name",
        "/resourceGroups/rg-",
        "kv-upg-",
        "AZURE_LOCATION",
        "Entra ID refused",
        "is not a client id",
    ):
        assert text in posix and text in windows, text
    assert "AZURE_KEY_VAULT_NAME" not in posix and "AZURE_KEY_VAULT_NAME" not in windows  # gone after azd down
    assert "ad app show" not in posix and "ad app show" not in windows  # a given id is not looked up


def test_the_readme_says_what_azd_down_leaves_and_what_the_next_azd_up_does():
    readme = " ".join((ROOT / "docs" / "operations.md").read_text().split())
    retention = re.search(r"softDeleteRetentionInDays: (\d+)", (ROOT / "infra" / "secrets.bicep").read_text()).group(1)
    leaves = "`azd down` deletes the resource group and everything in it, and leaves two things. With notifications,"
    assert f"{leaves} the Key Vault stays soft-deleted for {retention} days" in readme
    assert "the next `azd up` of that environment, in that subscription and region, recovers it" in readme
    assert "the API's app registration stays in Entra ID, and the next `azd up` finds it by name" in readme
