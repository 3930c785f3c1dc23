"""A small Microsoft Graph client: managed-identity tokens, pacing, typed errors, paging.

Every path segment is percent-encoded by the caller through `segment()`: installation ids contain
'/', '+' and '='; chat ids contain ':' and '@'.
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import quote, urlencode, urlsplit

import requests
from azure.identity import ManagedIdentityCredential  # at import: not on the first invocation's path

from shared.foundation.connections import pooled
from shared.foundation.errors import GraphBackendFailure, GraphError, GraphThrottled, GraphUnavailable, RunHalted
from shared.foundation.telemetry import event
from shared.graph.backend import BACKEND_RETRY_SECONDS, backend_failure
from shared.graph.permissions import token_roles

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
RETRYABLE_STATUS = {500, 502, 503, 504}
log = logging.getLogger(f"upgrader.{__name__}")


def segment(value: str) -> str:
    return quote(value, safe="")


class TokenSource:
    """Bearer tokens for Graph from an azure-identity credential, cached until shortly before expiry.

    After a 401, `invalidate()` makes the next token a fresh one: the request carries a claims
    challenge, which is how MSAL is told to bypass the token cache (ours and the platform's).
    """

    def __init__(self, credential, *, scope: str = GRAPH_SCOPE, margin: float = 300.0, clock: Callable[[], float] = time.time):
        self._credential = credential
        self._scope = scope
        self._margin = margin
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_on = 0.0
        self._claims: str | None = None

    def token(self) -> str:
        with self._lock:
            if self._token is None or self._expires_on - self._clock() < self._margin:
                kwargs = {"claims": self._claims} if self._claims else {}
                access = self._credential.get_token(self._scope, **kwargs)
                self._token, self._expires_on, self._claims = access.token, float(access.expires_on), None
            return self._token

    def invalidate(self) -> None:
        with self._lock:
            self._token = None
            self._claims = json.dumps({"access_token": {"nbf": {"essential": True, "value": str(int(self._clock()))}}})


def managed_identity_tokens(client_id: str | None) -> TokenSource:
    return TokenSource(ManagedIdentityCredential(client_id=client_id) if client_id else ManagedIdentityCredential())


def graph_session(base_url: str) -> requests.Session:
    """A session that reads the environment (proxies, a CA bundle) once: by default requests reads
    it, and looks for a .netrc file, on every request, which costs more CPU than the request."""
    session = pooled(requests.Session())
    session.proxies = requests.utils.get_environ_proxies(base_url)
    session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    session.trust_env = False
    return session


@dataclass(frozen=True)
class GraphResponse:
    status: int
    body: dict | None
    received_at: float  # when the response arrived: a later request on the same chat waits from here


def _retry_after(response: requests.Response) -> float | None:
    raw = response.headers.get("Retry-After")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:  # an HTTP date
        return max(0.0, email.utils.parsedate_to_datetime(raw).timestamp() - time.time())
    except (TypeError, ValueError):
        return None  # unreadable: our own backoff applies


def _json_object(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def _error(response: requests.Response, attempt: int) -> GraphError:
    """A typed error from any error response, whatever its body (Graph's JSON, HTML from a proxy...).

    429: throttled (never applied). 5xx: unavailable (a POST may have been applied). A 400 that
    says Teams' backend failed (graph.backend): unavailable too, after a short wait. Anything
    else: final."""
    try:
        error = _json_object(_json_object(response.json()).get("error"))
    except ValueError:
        error = {}
    inner = _json_object(error.get("innerError"))
    code = str(error.get("code") or response.reason or "unknown")
    full_message = str(error.get("message") or response.text[:200] or response.reason or "")
    message = full_message[:500]
    request_id = inner.get("request-id") or response.headers.get("request-id")
    status = response.status_code
    backoff = min(2.0**attempt, 60.0)
    if status == 429:
        return GraphThrottled(status, code, message, retry_after=_retry_after(response) or backoff, request_id=request_id)
    if status in RETRYABLE_STATUS:
        return GraphUnavailable(status, code, message, retry_after=_retry_after(response) or backoff, request_id=request_id)
    if backend_failure(status, full_message, str(inner.get("message") or "")):
        wait = _retry_after(response) or BACKEND_RETRY_SECONDS
        return GraphBackendFailure(status, code, message, retry_after=wait, request_id=request_id)
    return GraphError(status, code, message, request_id=request_id)


class GraphClient:
    def __init__(
        self,
        *,
        base_url: str,
        tokens: TokenSource,
        pacer=None,
        session: requests.Session | None = None,
        timeout: float = 30.0,
        inline_retry_seconds: float = 5.0,
        max_attempts: int = 4,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._origin = urlsplit(self.base_url)[:2]
        self._tokens = tokens
        self._pacer = pacer
        self._session = session or graph_session(self.base_url)
        self._timeout = timeout
        self._inline_retry_seconds = inline_retry_seconds
        self._max_attempts = max_attempts
        self._clock = clock

    def now(self) -> float:
        """The time on the clock its responses are stamped with (`GraphResponse.received_at`): the pacer's."""
        return self._clock()

    def url(self, path: str, params: dict | None = None) -> str:
        query = f"?{urlencode(params, quote_via=quote, safe=chr(36) + ',()=/:@')}" if params else ""
        return f"{self.base_url}{path}{query}"

    def get(
        self,
        path: str,
        *,
        params: dict | None = None,
        bucket: str,
        not_before: float = 0.0,
        proceed: Callable[[], bool] | None = None,
        more: int | None = None,
    ) -> GraphResponse:
        return self.send("GET", self.url(path, params), bucket=bucket, not_before=not_before, proceed=proceed, more=more)

    def post(
        self,
        path: str,
        body: dict,
        *,
        bucket: str,
        not_before: float = 0.0,
        retry_unavailable: bool = True,
        proceed: Callable[[], bool] | None = None,
        more: int | None = None,
    ) -> GraphResponse:
        return self.send(
            "POST",
            self.url(path),
            body=body,
            bucket=bucket,
            not_before=not_before,
            retry_unavailable=retry_unavailable,
            proceed=proceed,
            more=more,
        )

    def roles(self) -> set[str] | None:
        """The application permissions in the current token (None when it does not say)."""
        return token_roles(self._tokens.token())

    def renew_token(self) -> None:
        """The next request fetches a new token: permissions were granted since this one was issued."""
        self._tokens.invalidate()

    def send(
        self,
        method: str,
        url: str,
        *,
        bucket: str,
        body: dict | None = None,
        not_before: float = 0.0,
        retry_unavailable: bool = True,
        proceed: Callable[[], bool] | None = None,
        more: int | None = None,
    ) -> GraphResponse:
        """Sends one request in its pacing slot; retries here only what fits in a short wait.

        `proceed`, asked once the slot has come, may still stop the request (RunHalted): a run
        cancelled while its GET or POST waited for its slot sends nothing more. `more`: how many
        requests to the bucket the caller sends right after this one (see Pacer.acquire).

        429 is always safe to retry (nothing was applied). A 5xx, a timeout or a 400 from a failing
        Teams backend (GraphBackendFailure) on a POST may have been applied, so callers that must not
        repeat a POST pass retry_unavailable=False and re-check.
        Longer waits are raised as GraphThrottled / GraphUnavailable for the caller to reschedule.
        """
        if urlsplit(url)[:2] != self._origin:
            raise GraphError(None, "untrustedLink", f"refusing to send a token to {urlsplit(url).netloc}")
        waited = 0.0
        unauthorized = False
        headers = {"Accept": "application/json"}

        def prepare() -> None:  # in the last moments before the slot, not between the slot and the request
            if proceed is not None and not proceed():
                raise RunHalted(f"{method} not sent: the run stopped")
            headers["Authorization"] = f"Bearer {self._tokens.token()}"

        for attempt in range(self._max_attempts):
            if self._pacer is not None:
                self._pacer.acquire(bucket, not_before, more=more, prepare=prepare)
            else:
                prepare()
            headers["client-request-id"] = str(uuid.uuid4())
            started = self._clock()
            try:
                response = self._session.request(method, url, json=body, headers=headers, timeout=self._timeout)
            except (requests.ConnectionError, requests.Timeout) as exc:
                error: GraphError = GraphUnavailable(
                    None, "transportError", type(exc).__name__, retry_after=min(2.0**attempt, 60.0)
                )
            else:
                received = self._clock()
                log.debug("%s %s -> %s in %.0f ms", method, urlsplit(url).path, response.status_code, (received - started) * 1000)
                if response.status_code < 300:
                    data = response.json() if response.content and "json" in response.headers.get("Content-Type", "") else None
                    return GraphResponse(response.status_code, data, received)
                error = _error(response, attempt)
                if response.status_code == 401 and not unauthorized:
                    unauthorized = True  # a token revoked or rotated early: fetch a new one once
                    self._tokens.invalidate()
                    continue
            if not isinstance(error, (GraphThrottled, GraphUnavailable)):
                raise error
            if isinstance(error, GraphThrottled):
                event(
                    "throttled",
                    "Graph throttled %s: Retry-After %.0f s",
                    bucket,
                    error.retry_after,
                    level=logging.WARNING,
                    bucket=bucket,
                    graphStatus=429,
                    retryAfter=error.retry_after,
                )
                if self._pacer is not None:
                    self._pacer.backoff(bucket, error.retry_after)
            else:
                if not retry_unavailable:
                    raise error
            waited += error.retry_after
            if attempt + 1 >= self._max_attempts or waited > self._inline_retry_seconds:
                raise error
            not_before = self._clock() + error.retry_after
            if self._pacer is None:
                time.sleep(error.retry_after)
        raise error

    def pages(self, path: str, *, params: dict | None, bucket: str, spacing: float = 0.0) -> Iterator[list[dict]]:
        """Yields each page's `value`, following @odata.nextLink; `spacing` seconds between pages."""
        url: str | None = self.url(path, params)
        not_before = 0.0
        while url:
            response = self.send("GET", url, bucket=bucket, not_before=not_before)
            body = response.body or {}
            yield [item for item in body.get("value", []) if isinstance(item, dict)]
            url = body.get("@odata.nextLink")
            not_before = response.received_at + spacing
