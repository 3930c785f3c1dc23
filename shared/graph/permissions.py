"""The application permissions (app roles) a run needs, and what the identity's token holds.

A managed identity's Graph token lists its app roles in the `roles` claim. The start step checks
them before any upgrade, so a run whose identity lacks a permission fails at once with the
permission's name; Graph's own 403 ("Missing role permissions on the request. API requires one of
'...'") is caught as well, for whatever the token does not tell (see foundation.errors).

The sets are every application permission Graph's reference page documents for the upgrade call of
each scope (chat-, team- and userteamwork-teamsappinstallation-upgrade), least privileged first, so
that the check never fails an identity Graph would let through; docs/operations.md's permission table lists
the same (a test compares them). Left out: the `...Self...` permissions, which Graph lists as least
privileged but which let a Teams app upgrade only itself, never the app this one upgrades (an
identity holding nothing else would find no installation to upgrade); and resource-specific consent
(`Chat.Manage.Chat`), which is granted per chat and never appears in the token's roles.
"""

from __future__ import annotations

import base64
import binascii
import json

INSTALLATION = "TeamsAppInstallation."
UPGRADE_ROLES: dict[str, tuple[str, ...]] = {
    "chat": tuple(
        INSTALLATION + p
        for p in (
            "ReadWriteForChat.All",
            "ReadWriteAndConsentForChat.All",
            "ManageSelectedForChat.All",
        )
    ),
    "team": (
        *(
            INSTALLATION + p
            for p in (
                "ReadWriteForTeam.All",
                "ReadWriteAndConsentForTeam.All",
                "ManageSelectedForTeam.All",
            )
        ),
        "Group.ReadWrite.All",  # "supported only for backward compatibility"
        "Directory.ReadWrite.All",
    ),
    "personal": tuple(
        INSTALLATION + p
        for p in (
            "ReadWriteForUser.All",
            "ReadWriteAndConsentForUser.All",
            "ManageSelectedForUser.All",
            "ReadWriteSelectedForUser.All",
        )
    ),
}


def token_roles(token: str) -> set[str] | None:
    """The `roles` claim of a JWT (read, not verified: it is our own token, on its way to Graph);
    None when the token is not a JWT or has no such claim (then Graph's answers decide)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    roles = claims.get("roles") if isinstance(claims, dict) else None
    if not isinstance(roles, list):
        return None
    return {r for r in roles if isinstance(r, str)}


def missing_upgrade_roles(roles: set[str] | None, scopes: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """For each scope whose upgrade no role in `roles` allows: the roles that would."""
    if roles is None:
        return {}
    return {scope: UPGRADE_ROLES[scope] for scope in scopes if not roles & set(UPGRADE_ROLES[scope])}
