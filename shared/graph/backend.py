"""Which 400s are Teams' backend failing rather than the request being wrong.

Graph answers some Teams calls (installs and upgrades among them) `400 BadRequest` with a message
saying that a request Teams' middle tier made to one of its own services failed; the same call goes
through when it is repeated (public Graph documentation issue threads: microsoft-graph-docs-contrib
#149, microsoft-graph-docs #20972 and #17523). Such a 400 is transient. Every other 400
(`ResourceSpecificPermissionsMismatch`, an invalid id, a malformed body...) is the request's fault
and final.

The recognised messages are listed here, and only here; the client classifies with them.
"""

from __future__ import annotations

import re

# (what failed, how Graph's message says it). Graph puts the middle tier's exception text in the
# message, sometimes after a prefix naming the operation ("Exception in
# CreateOrUpdateUserAppEntitlementForTeamsAsync. ..."), so a pattern may match anywhere in it.
BACKEND_FAILURES: tuple[tuple[str, re.Pattern[str]], ...] = (
    # "Failed to execute Skype backend request CreateThreadRequest." (or GetThreadS2SRequest, ...)
    ("Teams chat service", re.compile(r"Failed to execute Skype backend request", re.IGNORECASE)),
    # "Failed to execute settings store request: https://.../appentitlements, StatusCode: 400,
    #  ReasonPhrase: Schema validation errors, ..."
    (
        "Teams settings store",
        re.compile(r"Failed to execute settings store request.*Schema validation errors", re.IGNORECASE | re.DOTALL),
    ),
)

# How long a POST that met a failing backend waits before it is re-checked and sent again, when
# Graph gives no Retry-After: a moment, not the growing backoff of an outage.
BACKEND_RETRY_SECONDS = 2.0


def backend_failure(status: int | None, *messages: str) -> str | None:
    """What failed behind Graph, when a 400's message (or its inner error's) says Teams' backend
    failed; None for any other answer."""
    if status != 400:
        return None
    for what, pattern in BACKEND_FAILURES:
        if any(pattern.search(message) for message in messages if message):
            return what
    return None
