"""A loopback proxy in front of Azurite that counts what the app asks of storage: table
transactions and the entity operations inside them, point reads, queries, queue messages sent,
received, deleted and updated; per second and per table partition, so a run's storage load per
target can be measured and compared with Azure Storage's scalability targets."""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from urllib.parse import unquote, urlsplit

import requests

from devtools.azurite import ACCOUNT, ACCOUNT_KEY
from devtools.loopback import reply, serve_calls, shutdown

SUB_REQUEST = re.compile(rb"^(GET|PUT|POST|MERGE|PATCH|DELETE) (\S+) HTTP/1\.1", re.M)
PARTITION_IN_URL = re.compile(r"PartitionKey='([^']*)'")
PARTITION_IN_BODY = re.compile(rb'"PartitionKey"\s*:\s*"([^"]*)"')
IDLE_SECONDS = 2.0  # well under the 5 s Azurite keeps an idle connection open
HOP_HEADERS = {"content-length", "transfer-encoding", "connection", "content-encoding", "host"}


@dataclass
class Usage:
    operations: Counter = field(default_factory=Counter)  # kind -> count
    entity_writes: list[tuple[float, str]] = field(default_factory=list)  # (time, table partition)
    writes_by_table: Counter = field(default_factory=Counter)
    messages_sent: list[tuple[float, str]] = field(default_factory=list)  # (time, queue)


class StorageMeter:
    """`connection_string` points the app at the proxy; `usage` holds what went through."""

    def __init__(self, queue_url: str, table_url: str, clock=None, *, queue_urls: Mapping[str, str] | None = None) -> None:
        """`queue_urls` sends the named queues to other emulators (queue name -> queue service URL),
        the rest to `queue_url`."""
        import time

        self._clock = clock or time.time
        self._targets = {"queue": _origin(queue_url), "table": _origin(table_url)}
        self._queue_targets = {name: _origin(url) for name, url in (queue_urls or {}).items()}
        self._session = threading.local()
        self._lock = threading.Lock()
        self.usage = Usage()
        self._servers = {name: serve_calls(lambda h, b, n=name: self._forward(n, h, b)) for name in self._targets}

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self._servers[service].server_address[1]}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"QueueEndpoint={self.url('queue')};TableEndpoint={self.url('table')};"
        )

    def reset(self) -> None:
        with self._lock:
            self.usage = Usage()

    def close(self) -> None:
        for server in self._servers.values():
            shutdown(server)

    def _http(self) -> requests.Session:
        """This thread's session to Azurite. Its connections are dropped after IDLE_SECONDS unused:
        Azurite closes kept-alive connections idle for 5 s, and a request sent just as it does fails
        here, then is sent, and counted, again by the app's retry."""
        session, used = getattr(self._session, "value", (None, 0.0))
        now = self._clock()
        if session is None:
            session = requests.Session()
        elif now - used > IDLE_SECONDS:
            session.close()  # its pool reconnects on the next request
        self._session.value = (session, now)
        return session

    def _forward(self, service: str, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        self._count(service, handler.command, handler.path, body)
        headers = {k: v for k, v in handler.headers.items() if k.lower() != "host"}
        target = self._targets[service]
        if service == "queue":
            target = self._queue_targets.get(_queue(urlsplit(handler.path).path), target)
        answer = self._http().request(handler.command, target + handler.path, headers=headers, data=body, timeout=60)
        reply(
            handler, answer.status_code, answer.content, {k: v for k, v in answer.headers.items() if k.lower() not in HOP_HEADERS}
        )

    def _count(self, service: str, method: str, path: str, body: bytes) -> None:
        now = self._clock()
        url = urlsplit(path)
        with self._lock:
            usage = self.usage
            if service == "queue":
                queue = _queue(url.path)
                kind = {"POST": "queueSend", "GET": "queueReceive", "DELETE": "queueDelete", "PUT": "queueUpdate"}.get(method)
                if not url.path.endswith("/messages") and "/messages/" not in url.path:
                    kind = "queueOther"
                usage.operations[kind or "queueOther"] += 1
                if kind == "queueSend":
                    usage.messages_sent.append((now, queue))
                return
            if url.path.endswith("/$batch"):
                subs = list(SUB_REQUEST.finditer(body))
                usage.operations["tableTransaction"] += 1
                usage.operations["tableTransactionEntities"] += len(subs)
                for i, sub in enumerate(subs):
                    if sub.group(1) == b"GET":
                        continue
                    chunk = body[sub.start() : subs[i + 1].start() if i + 1 < len(subs) else len(body)]
                    target = unquote(sub.group(2).decode())
                    usage.entity_writes.append((now, _partition(target, chunk)))
                    usage.writes_by_table[_table(target)] += 1
                return
            if method == "GET":
                usage.operations[_read_kind(unquote(url.path), url.query or "")] += 1
            elif method in ("PUT", "POST", "MERGE", "PATCH", "DELETE"):
                usage.operations["tableWrite"] += 1
                usage.entity_writes.append((now, _partition(unquote(url.path), body)))
                usage.writes_by_table[_table(unquote(url.path))] += 1
            else:
                usage.operations["tableOther"] += 1


def _origin(service_url: str) -> str:
    """The service's address without the account: what a request's path (which holds it) goes after."""
    return service_url.rstrip("/").rsplit("/", 1)[0]


def _queue(path: str) -> str:
    """The queue a request is about ("/<account>/<queue>/messages..."), or "" for the account's own."""
    return path.split("/")[2] if path.count("/") >= 2 else ""


def _read_kind(path: str, query: str) -> str:
    """A query; a point read of a run's control row or of a pacing schedule (polling: a few per
    second per process, whatever the run's size); or any other point read."""
    if "(" not in path or "$filter" in query:
        return "tableQuery"
    if "RowKey='run')" in path:
        return "controlRead"
    if "/upgraderpacing(" in path:
        return "pacingRead"
    return "tableRead"


def _table(path: str) -> str:
    """The table an entity write goes to: the last path segment, without its key."""
    return urlsplit(path).path.rstrip("/").rsplit("/", 1)[-1].split("(", 1)[0]


def _partition(path: str, body: bytes) -> str:
    match = PARTITION_IN_URL.search(path)
    if match:
        return match.group(1)
    found = PARTITION_IN_BODY.search(body)
    return found.group(1).decode() if found else "?"
