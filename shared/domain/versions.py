"""Teams app versions compare numerically: 1.10.0 is newer than 1.9.0."""

from __future__ import annotations

import re

_PART = re.compile(r"(\d+)|(\D+)")


def version_key(version: str) -> tuple:
    """Sort key: numeric parts compare as numbers, trailing zero parts are ignored (1.2 == 1.2.0).

    Manifests use MAJOR.MINOR.PATCH; anything else still gets a total, stable order
    (within a dot-separated part, text sorts before numbers).
    """
    parts: list[tuple] = []
    for piece in version.strip().split("."):
        tokens: list[tuple] = []
        for number, text in _PART.findall(piece):
            tokens.append((1, int(number), "") if number else (0, 0, text))
        parts.append(tuple(tokens))
    while parts and parts[-1] in (((1, 0, ""),), ()):
        parts.pop()
    return tuple(parts)


def is_at_least(installed: str, target: str) -> bool:
    return version_key(installed) >= version_key(target)
