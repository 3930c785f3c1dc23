"""Per-scope Graph calls: chats, teams and users' personal scope."""

from __future__ import annotations

from shared.scopes.base import Scope
from shared.scopes.chat import CHAT
from shared.scopes.personal import PERSONAL
from shared.scopes.team import TEAM

BY_NAME: dict[str, Scope] = {s.name: s for s in (CHAT, TEAM, PERSONAL)}


def scope(name: str) -> Scope:
    return BY_NAME[name]
