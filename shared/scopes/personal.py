"""Users' personal scope: an installation per user (1:1 bot chats are personal installations);
every user of the tenant, or of the discovery group, is a target. A user without Teams answers 404."""

from __future__ import annotations

from shared.scopes.base import Scope

PERSONAL = Scope(
    name="personal", collection="/users/{id}/teamwork/installedApps", get_bucket="installedApps.teamUser.get", spacing=0.0
)
