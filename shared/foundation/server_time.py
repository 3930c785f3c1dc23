"""What a storage response says about the service's clock when it made the response.

Every response carries `Date` (RFC 1123, whole seconds: the service's time was within that second).
A table write answers with the written entity's ETag, W/"datetime'2026-12-06T04%3A56%3A59.6769020Z'",
which is the time of the write, far finer than a second. The ETag of a read is the time of an older
write, so only writes count."""

from __future__ import annotations

import email.utils
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import unquote

WRITES = frozenset({"PUT", "POST", "MERGE", "PATCH"})
STAMP_RESOLUTION = 0.001  # the emulator stamps writes to the millisecond (Azure to 100 ns)
_STAMP = re.compile(r"""^W/"datetime'([^']+)'"$""")


def date_seconds(value: str) -> float | None:
    """The epoch second a `Date` header names; None when it is not an HTTP date."""
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:  # "-0000": UTC, by RFC 5322
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def write_stamp(method: str, status: int, headers: Mapping[str, str]) -> float | None:
    """When the service made a successful table write, from its ETag; None for anything else."""
    if method.upper() not in WRITES or not 200 <= status < 300:
        return None
    match = _STAMP.match(headers.get("ETag") or "")
    if match is None:
        return None
    try:
        moment = datetime.fromisoformat(unquote(match.group(1)))
    except ValueError:
        return None
    return moment.replace(tzinfo=moment.tzinfo or UTC).timestamp()
