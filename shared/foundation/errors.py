"""Error types. Every error the app reports is the object {"code": ..., "message": ...}."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class ErrorInfo:
    code: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class RequestError(Exception):
    """Bad input on an HTTP route: answered with `status` and a JSON error body."""

    def __init__(self, code: str, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.info = ErrorInfo(code, message)
        self.status = status
        self.headers: dict[str, str] = {}  # e.g. the WWW-Authenticate challenge of a 401


class RunFailure(Exception):
    """Ends a whole run in state `failed` (unknown app, version not published, ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.info = ErrorInfo(code, message)


class RunHalted(Exception):
    """A request not sent: its run was cancelled or paused while it waited for its pacing slot."""


class MalformedMessage(Exception):
    """A queue message that is not one of ours; retried by the host, then poisoned."""


class GraphError(Exception):
    """A Microsoft Graph request that failed with a terminal status (4xx other than 429)."""

    def __init__(self, status: int | None, code: str, message: str, *, request_id: str | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id


class GraphRetryable(GraphError):
    """A failure worth retrying later: `retry_after` seconds is the server's hint, or our backoff."""

    def __init__(self, status: int | None, code: str, message: str, *, retry_after: float, request_id: str | None = None) -> None:
        super().__init__(status, code, message, request_id=request_id)
        self.retry_after = retry_after


class GraphThrottled(GraphRetryable):
    """429 Too Many Requests. The request was not applied."""


class GraphUnavailable(GraphRetryable):
    """5xx, timeout or connection failure. A POST may or may not have been applied."""


class GraphBackendFailure(GraphUnavailable):
    """A 400 whose message says a request of Teams' own middle tier failed (see graph.backend): not
    the request's fault, and it goes through when repeated. Like a 5xx, a POST may or may not have
    been applied, so it is re-checked before it is sent again."""


MISSING_ROLE = re.compile(r"Missing role permissions on the request\. API requires one of '([^']*)'", re.IGNORECASE)


class MissingPermissions(Exception):
    """The identity lacks an application permission: the whole run stops at once. `needs` maps
    what it could not do to the permissions that would allow it (any one of them)."""

    def __init__(self, needs: dict[str, list[str]], detail: str = "") -> None:
        self.needs = needs
        self.detail = detail
        super().__init__(self.message)

    @property
    def message(self) -> str:
        wants = "; ".join(f"{what} needs one of {', '.join(options)}" for what, options in self.needs.items())
        said = f" Graph said: {self.detail}" if self.detail else ""
        return (
            f"The Function App's identity lacks Graph permissions: {wants}. Grant them (scripts/grant-graph-permissions.sh), "
            f"then retry the run; a new token can take a while (managed identity tokens are cached).{said}"
        )


def missing_permissions(error: GraphError, what: str = "this request") -> MissingPermissions | None:
    """The permissions a 403 says are missing; None for other 403s (an app blocked by policy in one
    chat is that chat's failure, not the run's)."""
    if error.status != 403:
        return None
    match = MISSING_ROLE.search(error.message or "")
    if match is None:
        return None
    options = [p.strip() for p in match.group(1).split(",") if p.strip()]
    return MissingPermissions({what: options}, error.message)


def raise_missing_permissions(error: GraphError, what: str = "this request") -> None:
    """Raises MissingPermissions when `error` is Graph saying a permission is missing."""
    missing = missing_permissions(error, what)
    if missing is not None:
        raise missing from error
