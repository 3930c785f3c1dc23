"""scripts/grant-graph-permissions.sh against a stand-in for the Azure CLI (no tenant here): it looks
roles up by value, skips what is granted, grants the rest, and changes nothing in --dry-run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support import permission_rows

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "grant-graph-permissions.sh"
GRAPH_SP = "9a1b2c3d-0000-4000-8000-00000000beef"
PRINCIPAL = "5e6f7a8b-0000-4000-8000-00000000cafe"
ROLES = {
    "TeamsAppInstallation.ReadWriteForChat.All": "9e19bae1-2623-4c4f-ab6e-2664615ff9a0",
    "TeamsAppInstallation.ReadWriteAndConsentForChat.All": "6e74eff9-4a21-45d6-bc03-3a20f61f8281",
    "Chat.ReadBasic.All": "b2e060da-3baf-4687-9611-f4ebc0f0cbde",
    "User.Read.All": "df021288-bdef-4463-88db-98f22de89214",
    "GroupMember.ReadBasic.All": "5f7a8b9c-0000-4000-8000-00000000b45c",  # the stand-in's id: roles are looked up by value
    "AppCatalog.Read.All": "e12dae10-5a57-4817-b79d-dfbec5348930",
    "TeamsAppInstallation.ReadWriteForTeam.All": "5dad17ba-f6cc-4954-a5a2-a0dcc95154f0",
    "TeamsAppInstallation.ReadWriteAndConsentForTeam.All": "b0c13be0-8e20-4bc5-8c55-963c23a39ce9",
    "TeamsAppInstallation.ReadWriteForUser.All": "74ef0291-ca83-4d02-8c7e-d2391e6a444f",
    "TeamsAppInstallation.ReadWriteAndConsentForUser.All": "32ca478f-f89e-41d0-aaf8-101deb7da510",
    "Team.ReadBasic.All": "2280dda6-0bfd-44ee-a2f4-cb867cfc4c1e",
}
CHAT = {"AppCatalog.Read.All", "TeamsAppInstallation.ReadWriteForChat.All", "Chat.ReadBasic.All", "User.Read.All"}
TEAM = {"AppCatalog.Read.All", "TeamsAppInstallation.ReadWriteForTeam.All", "Team.ReadBasic.All"}
PERSONAL = {"AppCatalog.Read.All", "TeamsAppInstallation.ReadWriteForUser.All", "User.Read.All"}

# Answers exactly the calls the script makes, from a JSON state file.
FAKE_AZ = textwrap.dedent(f"""\
    #!{sys.executable}
    import json, os, re, sys
    state_path = os.environ["FAKE_AZ_STATE"]
    state = json.load(open(state_path))
    args = sys.argv[1:]
    state["calls"].append(args)
    def arg(name):
        return args[args.index(name) + 1] if name in args else None
    out = ""
    if args[:3] == ["ad", "sp", "show"]:
        query = arg("--query")
        if query == "id":
            out = state["graphSp"]
        else:  # the application permissions, as "value<TAB>id" lines
            out = "\\n".join(value + "\\t" + role for value, role in state["roles"].items())
    elif args[:1] == ["rest"] and arg("--method") == "GET":
        principal = re.search(r"servicePrincipals/([^/]+)/appRoleAssignments", arg("--url")).group(1)
        resource = re.search(r"resourceId=='([^']+)'", arg("--query")).group(1)
        out = "\\n".join(
            a["appRoleId"] for a in state["assignments"] if a["principalId"] == principal and a["resourceId"] == resource
        )
    elif args[:1] == ["rest"] and arg("--method") == "POST":
        state["assignments"].append(json.loads(arg("--body")))
    else:
        sys.exit("unexpected az call: " + " ".join(args))
    json.dump(state, open(state_path, "w"))
    if out:
        print(out)
""")


@pytest.fixture
def az(tmp_path):
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"graphSp": GRAPH_SP, "roles": ROLES, "assignments": [], "calls": []}))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "az").write_text(FAKE_AZ)
    (bin_dir / "az").chmod(0o755)

    def run(*args: str, env: dict | None = None) -> tuple[subprocess.CompletedProcess, dict]:
        environment = {k: v for k, v in os.environ.items() if k != "MANAGED_IDENTITY_PRINCIPAL_ID"}
        environment.update(PATH=f"{bin_dir}:{os.environ['PATH']}", FAKE_AZ_STATE=str(state), **(env or {}))
        result = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=environment, timeout=60)
        return result, json.loads(state.read_text())

    return run


def granted(state: dict) -> set[str]:
    names = {v: k for k, v in ROLES.items()}
    return {names[a["appRoleId"]] for a in state["assignments"] if a["principalId"] == PRINCIPAL and a["resourceId"] == GRAPH_SP}


def test_dry_run_prints_what_it_would_grant_and_changes_nothing(az):
    result, state = az("--principal-id", PRINCIPAL, "--dry-run")
    assert result.returncode == 0, result.stderr
    would = set(re.findall(r"would grant: (\S+)", result.stdout))
    assert would == {"Chat.ReadBasic.All", "User.Read.All", "AppCatalog.Read.All", "TeamsAppInstallation.ReadWriteForChat.All"}
    assert state["assignments"] == []


def test_grants_once_then_skips_what_is_granted(az):
    first, state = az("--principal-id", PRINCIPAL)
    assert first.returncode == 0, first.stderr
    assert granted(state) == {
        "Chat.ReadBasic.All",
        "User.Read.All",
        "AppCatalog.Read.All",
        "TeamsAppInstallation.ReadWriteForChat.All",
    }
    assert "24 hours" in first.stdout
    second, state = az("--principal-id", PRINCIPAL, "--group-discovery")
    assert second.returncode == 0, second.stderr
    assert second.stdout.count("already granted:") == 3  # User.Read.All is not asked for, nor revoked
    assert "granted: GroupMember.ReadBasic.All" in second.stdout
    assert len(state["assignments"]) == 5


def test_rsc_apps_get_the_consent_permission_instead(az):
    result, state = az("--principal-id", PRINCIPAL, "--rsc")
    assert result.returncode == 0
    assert "TeamsAppInstallation.ReadWriteAndConsentForChat.All" in granted(state)
    assert "TeamsAppInstallation.ReadWriteForChat.All" not in granted(state)


def test_the_principal_comes_from_azd_or_is_required(az):
    result, _ = az(env={"MANAGED_IDENTITY_PRINCIPAL_ID": ""})
    assert result.returncode == 2 and "--principal-id" in result.stderr
    result, state = az("--dry-run", env={"MANAGED_IDENTITY_PRINCIPAL_ID": PRINCIPAL})
    assert result.returncode == 0 and "would grant" in result.stdout
    calls = len(state["calls"])
    result, state = az("--principal-id", "c0ffee00-client-id-not-object-id")
    assert result.returncode == 2 and "object id" in result.stderr
    assert len(state["calls"]) == calls  # refused before any call


def test_the_default_scope_is_chat_with_exactly_the_permissions_it_had_before(az):
    result, state = az("--principal-id", PRINCIPAL)
    assert result.returncode == 0, result.stderr
    assert granted(state) == CHAT
    explicit, state = az("--principal-id", PRINCIPAL, "--scopes", "chat")
    assert explicit.returncode == 0, explicit.stderr
    assert explicit.stdout.count("already granted:") == 4 and len(state["assignments"]) == 4


@pytest.mark.parametrize(("scopes", "expected"), [("chat", CHAT), ("team", TEAM), ("personal", PERSONAL)])
def test_each_scope_alone_grants_exactly_its_permissions(az, scopes, expected):
    result, state = az("--principal-id", PRINCIPAL, "--scopes", scopes)
    assert result.returncode == 0, result.stderr
    assert granted(state) == expected


def test_scopes_are_combined_once_each_whatever_the_order_case_or_duplicates(az):
    result, state = az("--principal-id", PRINCIPAL, "--scopes", "personal, Team,chat,team")
    assert result.returncode == 0, result.stderr
    assert granted(state) == CHAT | TEAM | PERSONAL
    assert len(state["assignments"]) == len(CHAT | TEAM | PERSONAL)  # User.Read.All once, though two scopes need it


def test_all_scopes_with_rsc_get_the_consent_variants_and_none_of_the_plain_ones(az):
    result, state = az("--principal-id", PRINCIPAL, "--scopes", "chat,team,personal", "--rsc")
    assert result.returncode == 0, result.stderr
    assert granted(state) == {
        "AppCatalog.Read.All",
        "TeamsAppInstallation.ReadWriteAndConsentForChat.All",
        "TeamsAppInstallation.ReadWriteAndConsentForTeam.All",
        "TeamsAppInstallation.ReadWriteAndConsentForUser.All",
        "Chat.ReadBasic.All",
        "User.Read.All",
        "Team.ReadBasic.All",
    }


def test_group_discovery_lists_the_groups_members_instead_of_every_user(az):
    result, state = az("--principal-id", PRINCIPAL, "--scopes", "chat,team,personal", "--group-discovery")
    assert result.returncode == 0, result.stderr
    assert granted(state) == (CHAT | TEAM | PERSONAL | {"GroupMember.ReadBasic.All"}) - {"User.Read.All"}


def test_pilot_rings_add_the_group_members_permission_and_keep_the_scan_of_every_user(az):
    result, state = az("--principal-id", PRINCIPAL, "--scopes", "chat,personal", "--rings")
    assert result.returncode == 0, result.stderr
    assert granted(state) == CHAT | PERSONAL | {"GroupMember.ReadBasic.All"}


def test_group_discovery_for_teams_only_needs_group_members_and_teams_not_users(az):
    result, state = az("--principal-id", PRINCIPAL, "--scopes", "team", "--group-discovery")
    assert result.returncode == 0, result.stderr
    assert granted(state) == TEAM | {"GroupMember.ReadBasic.All"}
    assert "User.Read.All" not in granted(state)


@pytest.mark.parametrize(
    ("scopes", "named"),
    [("chat,teams", "'teams'"), ("bogus", "'bogus'"), ("chat,", "empty scope"), ("", "empty"), (" , ", "empty")],
)
def test_a_bad_scope_list_is_refused_before_any_call(az, scopes, named):
    result, state = az("--principal-id", PRINCIPAL, "--scopes", scopes)
    assert result.returncode == 2
    assert "--scopes" in result.stderr and named in result.stderr
    assert state["calls"] == []


def test_scopes_without_a_value_is_refused_before_any_call(az):
    result, state = az("--principal-id", PRINCIPAL, "--scopes")
    assert result.returncode == 2 and "--scopes needs a value" in result.stderr
    assert state["calls"] == []


def test_help_lists_the_permissions_of_each_scope(az):
    result, state = az("--help")
    assert result.returncode == 0 and state["calls"] == []
    for permission in ROLES:
        assert permission in result.stdout
    assert "--scopes" in result.stdout and "UPGRADE_SCOPES" in result.stdout


NAMED_PERMISSION = re.compile(r"\b(?:TeamsAppInstallation|Chat|User|GroupMember|AppCatalog|Team)\.[A-Za-z.]+\.All\b")


def test_both_scripts_name_the_same_permissions():
    for script in ("grant-graph-permissions.sh", "grant-graph-permissions.ps1"):
        source = (ROOT / "scripts" / script).read_text()
        assert set(NAMED_PERMISSION.findall(source)) == set(ROLES), script


def test_both_scripts_take_the_same_options():
    bash = set(re.findall(r"^\s+(--[a-z-]+)\)", SCRIPT.read_text(), re.MULTILINE))
    powershell = set(
        re.findall(r"\[(?:string|string\[\]|switch)\] \$(\w+)", (ROOT / "scripts" / "grant-graph-permissions.ps1").read_text())
    )
    assert {"".join(part.title() for part in option[2:].split("-")) for option in bash} == powershell
    assert {"--principal-id", "--scopes", "--rsc", "--group-discovery", "--rings", "--dry-run"} == bash


def test_the_readme_names_every_permission():
    readme = (ROOT / "docs" / "operations.md").read_text()
    missing = [permission for permission in ROLES if f"`{permission}`" not in readme]
    assert missing == []


@pytest.mark.parametrize("group", [False, True])
@pytest.mark.parametrize("rsc", [False, True])
@pytest.mark.parametrize("scope", ["chat", "team", "personal"])
def test_the_script_grants_what_the_readme_table_says_for_each_scope(az, scope, rsc, group):
    rows = [r for r in permission_rows() if r.scope in (scope, "every", *(["group"] if group else []))]
    rows = [r for r in rows if not (group and r.not_with_group)]
    expected = {p for r in rows for p in (r.grant_rsc or r.grant if rsc else r.grant)}
    args = ["--principal-id", PRINCIPAL, "--scopes", scope, "--dry-run"]
    result, _ = az(*args, *(["--rsc"] if rsc else []), *(["--group-discovery"] if group else []))
    assert result.returncode == 0, result.stderr
    assert set(re.findall(r"would grant: (\S+)", result.stdout)) == expected
