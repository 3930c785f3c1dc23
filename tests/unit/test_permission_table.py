"""The identity pre-check (token roles -> missingPermissions) accepts exactly the permissions the
permission table (docs/operations.md) lists for each scope's upgrade call, and never a `...Self...`
one; the README's summary per scope is what that table grants."""

from __future__ import annotations

import re

import pytest

from shared.graph.permissions import UPGRADE_ROLES, missing_upgrade_roles
from tests.support import ROOT, names, permission_rows

SCOPES = ("chat", "team", "personal")


def upgrade_row(scope: str):
    [row] = [r for r in permission_rows() if r.scope == scope and r.is_upgrade]
    return row


@pytest.mark.parametrize("scope", SCOPES)
def test_the_pre_check_accepts_what_the_readme_lists_for_the_upgrade_call(scope):
    row = upgrade_row(scope)
    assert row.grant and row.grant_rsc and row.also  # the row was read (not an empty parse)
    assert set(UPGRADE_ROLES[scope]) == row.accepted


@pytest.mark.parametrize("scope", SCOPES)
def test_each_accepted_permission_alone_passes_the_pre_check_and_only_for_its_scope(scope):
    for role in UPGRADE_ROLES[scope]:
        assert missing_upgrade_roles({role}, (scope,)) == {}, role
        others = tuple(s for s in SCOPES if s != scope)
        if role.startswith("TeamsAppInstallation."):  # Group/Directory.ReadWrite.All belong to teams only anyway
            assert set(missing_upgrade_roles({role}, others)) == set(others), role


@pytest.mark.parametrize(("scope", "noun"), [("chat", "Chat"), ("team", "Team"), ("personal", "User")])
def test_self_permissions_never_satisfy_the_pre_check(scope, noun):
    own = {f"TeamsAppInstallation.ReadWriteSelfFor{noun}.All", f"TeamsAppInstallation.ReadWriteAndConsentSelfFor{noun}.All"}
    assert missing_upgrade_roles(own, (scope,)) == {scope: UPGRADE_ROLES[scope]}
    assert not [role for roles in UPGRADE_ROLES.values() for role in roles if "Self" in role]
    # Graph's reference names a Self permission as least privileged for the call; the table says so,
    # and the pre-check does not take it
    assert upgrade_row(scope).least == (f"TeamsAppInstallation.ReadWriteSelfFor{noun}.All",)


def test_read_only_or_unrelated_roles_are_missing_permissions():
    roles = {"TeamsAppInstallation.ReadForChat.All", "TeamsAppInstallation.Read.All", "Chat.ReadWrite.All", "Group.Read.All"}
    assert set(missing_upgrade_roles(roles, SCOPES)) == set(SCOPES)
    assert missing_upgrade_roles(None, SCOPES) == {}  # no roles claim: Graph's answers decide


def test_every_row_names_graphs_least_privileged_permission_and_a_granted_permission_that_works_for_it():
    rows = permission_rows()
    assert len(rows) >= 15 and {r.scope for r in rows} == {"every", "chat", "team", "personal", "group"}
    upgrade = {r.scope: r.accepted for r in rows if r.is_upgrade}
    for row in rows:
        assert row.least, row.call
        works = {*row.least, *row.accepted, *(upgrade[row.scope] if row.also_upgrade_row else ())}
        in_scope = [r for r in rows if r.scope in (row.scope, "every")]
        granted = {p for r in in_scope for p in r.grant}
        granted_rsc = {p for r in in_scope for p in (r.grant_rsc or r.grant)}  # with --rsc
        # a row without a grant of its own is covered by another grant of its scope, with --rsc or not
        assert row.grant or (granted & works and granted_rsc & works), row.call
        assert set(row.grant) <= works and set(row.grant_rsc) <= works, row.call


def readme_summary() -> dict[str, str]:
    """The README's table of what the script grants, by scope cell."""
    section = (ROOT / "README.md").read_text().split("\n| scope | permissions |\n", 1)[1]
    rows = [line for line in section.split("\n\n", 1)[0].splitlines()[1:] if line.startswith("| ")]
    return {scope.strip(): cell.strip() for scope, cell in (line.strip().strip("|").split("|") for line in rows)}


def test_the_readmes_summary_is_what_the_table_of_each_call_grants():
    summary, rows = readme_summary(), permission_rows()
    cells = {"every": "every deployment", "chat": "`chat`", "team": "`team`", "personal": "`personal`"}
    for scope, cell in cells.items():
        rsc = "".join(re.findall(r"\(`--rsc`: ([^)]*)\)", summary[cell]))
        granted = [r for r in rows if r.scope == scope]
        assert set(names(re.sub(r"\(`--rsc`: [^)]*\)", "", summary[cell]))) == {p for r in granted for p in r.grant}, scope
        assert set(names(rsc)) == {p for r in granted for p in r.grant_rsc}, scope
    group, _, without = summary["`--group-discovery` (`DISCOVERY_GROUP_ID`)"].partition(", and")
    assert set(names(group)) == set(names(summary["`--rings` (pilot rings by `groupId`)"]))
    assert set(names(group)) == {p for r in rows if r.scope == "group" for p in r.grant}
    assert set(names(without)) == {p for r in rows if r.not_with_group for p in r.grant} == {"User.Read.All"}
