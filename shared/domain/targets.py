"""What a run upgrades: targets, one per installation place (a chat, a team, a user's personal
scope), and what became of each."""

from __future__ import annotations

from dataclasses import dataclass

from shared.foundation.settings import SCOPES

OUTCOMES = ("upgraded", "wouldUpgrade", "alreadyCurrent", "notInstalled", "failed", "cancelled")
COUNTS = (*OUTCOMES, "pending")
ID_FIELDS = {"chat": "chatId", "team": "teamId", "personal": "userId"}  # how the API names each scope's resource
LABELS = {"chat": "Chat", "team": "Team", "personal": "User"}


@dataclass(frozen=True, order=True)
class Target:
    """A place where the app may be installed: `id` is a chat id, a team id or a user id."""

    scope: str
    id: str

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise ValueError(f"unknown scope {self.scope!r}")

    @property
    def key(self) -> str:
        """`scope:id`, unique within a run: the form targets take in rows, inputs and the registry."""
        return f"{self.scope}:{self.id}"

    @classmethod
    def parse(cls, key: str) -> Target:
        scope, _, resource_id = key.partition(":")
        return cls(scope, resource_id)

    @property
    def id_field(self) -> str:
        return ID_FIELDS[self.scope]

    @property
    def label(self) -> str:
        return LABELS[self.scope]


@dataclass(frozen=True)
class Outcome:
    target: Target
    outcome: str  # one of OUTCOMES
    failure: dict | None = None  # {"status", "code", "message"} when outcome == "failed"
    version: str | None = None  # installed version seen


def counter(scope: str, name: str) -> str:
    """The counter property of one scope's count, e.g. teamUpgraded."""
    return scope + name[0].upper() + name[1:]
