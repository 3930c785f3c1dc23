"""HTTP connection pools sized for a worker's concurrency.

requests keeps 10 connections per host by default. A worker runs up to 24 invocations at once
(host.json: batchSize 16 + newBatchThreshold 8), several with threads of their own, so more
requests than that are in flight to storage and to Graph: each connection past the tenth is
dropped after its request ("Connection pool is full" in the logs) and the next opens a new one, a
TCP and TLS handshake on the hot path."""

from __future__ import annotations

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


def storage_transport() -> RequestsTransport:
    """A transport for the storage SDK clients (which retry in their own policies, never in urllib3)."""
    session = pooled(requests.Session(), retries=Retry(total=False, redirect=False, raise_on_status=False))
    return RequestsTransport(session=session, session_owner=False)
