"""HTTP connection pools sized for a worker's concurrency.

requests keeps 10 connections per host by default. A worker runs up to 24 invocations at once
(host.json: batchSize 16 + newBatchThreshold 8), several with threads of their own, so more
requests than that are in flight to storage and to Graph: each connection past the tenth is
dropped after its request ("Connection pool is full" in the logs) and the next opens a new one, a
TCP and TLS handshake on the hot path."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import requests
from azure.core.pipeline.transport import RequestsTransport
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

CONNECTIONS_PER_HOST = 64


def pooled(session: requests.Session, *, retries: Retry | int = 0) -> requests.Session:
    """Mounts adapters that keep CONNECTIONS_PER_HOST connections to each host."""
    adapter = HTTPAdapter(pool_connections=8, pool_maxsize=CONNECTIONS_PER_HOST, max_retries=retries)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


# a response's method, status and headers, with when its request left and when it came back (time.monotonic)
Observer = Callable[[str, int, Mapping[str, str], float, float], None]


class TimedTransport(RequestsTransport):
    """Tells `observer` of every response it receives, timed where the request leaves and the answer
    arrives: nothing of the SDK's pipeline (signing, retries, parsing) lies in between."""

    def __init__(self, observer: Observer, **kwargs) -> None:
        super().__init__(**kwargs)
        self._observer = observer

    def send(self, request, **kwargs):
        sent = time.monotonic()
        response = super().send(request, **kwargs)
        self._observer(request.method, response.status_code, response.headers, sent, time.monotonic())
        return response


def storage_transport(observer: Observer | None = None) -> RequestsTransport:
    """A transport for the storage SDK clients (which retry in their own policies, never in urllib3);
    with `observer`, one that tells it of every response."""
    session = pooled(requests.Session(), retries=Retry(total=False, redirect=False, raise_on_status=False))
    if observer is None:
        return RequestsTransport(session=session, session_owner=False)
    return TimedTransport(observer, session=session, session_owner=False)
