"""The README's Graph permission table, read as data: one row per Graph call the app makes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "docs" / "operations.md"
PERMISSION = re.compile(r"`([A-Za-z][A-Za-z-]*(?:\.[A-Za-z-]+)+)`")  # `User.Read.All`, not `--rsc` or `/users`
SCOPES = {"every deployment": "every", "`chat`": "chat", "`team`": "team", "`personal`": "personal"}


@dataclass(frozen=True)
class PermissionRow:
    scope: str  # chat | team | personal | every | group (with DISCOVERY_GROUP_ID)
    call: str
    least: tuple[str, ...]  # Graph's least privileged, as the reference page names it
    grant: tuple[str, ...]  # what the scripts grant for the call (none: another row's grant covers it)
    grant_rsc: tuple[str, ...]  # what they grant instead with --rsc (none: the same)
    also: tuple[str, ...]  # other permissions the reference lists that work as well
    also_upgrade_row: bool  # "every permission of the upgrade row" works as well

    @property
    def is_upgrade(self) -> bool:
        return self.call.startswith("`POST ") and "/upgrade`" in self.call

    @property
    def accepted(self) -> set[str]:
        return {*self.grant, *self.grant_rsc, *self.also}


def names(cell: str) -> tuple[str, ...]:
    return tuple(PERMISSION.findall(cell))


def permission_rows(text: str | None = None) -> list[PermissionRow]:
    text = README.read_text() if text is None else text
    section = text.split("\n## Graph permissions\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("| ")]
    header, rows = lines[0], lines[1:]
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "scope",
        "Graph call",
        "least privileged (Graph's reference)",
        "the scripts grant",
        "also accepted",
    ], header
    result = []
    for line in rows:
        scope, call, least, grant, also = (c.strip() for c in line.strip().strip("|").split("|"))
        plain, _, rsc = grant.partition("`--rsc`:")
        result.append(
            PermissionRow(
                scope=SCOPES.get(scope, "group" if "DISCOVERY_GROUP_ID" in scope else scope),
                call=call,
                least=names(least),
                grant=names(plain),
                grant_rsc=names(rsc),
                also=names(also),
                also_upgrade_row="every permission of the upgrade row" in also,
            )
        )
    return result
