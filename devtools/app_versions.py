"""Teams app versions as the emulated catalog orders them, written from the app manifest's rule.

The manifest's `version` is "MAJOR.MINOR.PATCH" and must follow semantic versioning: three
non-negative whole numbers, no leading zeros. Versions compare part by part, each part as a number,
so 1.10.0 is newer than 1.9.0 and 2.0.0 newer than 1.99.99. A package whose version is anything else
is refused by the catalog.

The emulator keeps its own comparison (it imports nothing from the app): a wrong rule in the app is
then caught by the emulator rather than agreed with.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MANIFEST_VERSION = re.compile(r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)")


class InvalidVersion(ValueError):
    """A version string that is not MAJOR.MINOR.PATCH."""


def parse(version: str) -> tuple[int, int, int]:
    """(major, minor, patch) of a manifest version; InvalidVersion for anything else."""
    match = MANIFEST_VERSION.fullmatch(version)
    if match is None:
        raise InvalidVersion(f"{version!r} is not a MAJOR.MINOR.PATCH version")
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def is_valid(version: str) -> bool:
    return MANIFEST_VERSION.fullmatch(version) is not None


def is_newer(version: str, than: str) -> bool:
    return parse(version) > parse(than)


def newest(versions: Iterable[str]) -> str:
    """The highest of the versions (ValueError when there is none)."""
    return max(versions, key=parse)
