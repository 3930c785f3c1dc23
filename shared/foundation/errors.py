"""Error types. Every error the app reports is the object {"code": ..., "message": ...}."""

from __future__ import annotations

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


class RunFailure(Exception):
    """Ends a whole run in state `failed` (unknown app, version not published, ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.info = ErrorInfo(code, message)


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
