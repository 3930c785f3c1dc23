"""What reaches Application Insights: the app's log records go through the same OpenTelemetry
pipeline the Python worker sets up (PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY), with the real
Azure Monitor exporter, to a loopback ingestion endpoint; each chat line carries its properties as
customDimensions, and no record holds a token or a key."""

from __future__ import annotations

import gzip
import json
import logging
import threading
import uuid
from http.server import BaseHTTPRequestHandler

import pytest
from azure.monitor.opentelemetry.exporter import AzureMonitorLogExporter
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor

from devtools.azurite import ACCOUNT_KEY
from devtools.funchost import ROOT
from devtools.loopback import reply, serve_calls, shutdown
from shared.foundation.telemetry import LOGGER
from tests.support import Api, group_chats, org_app, people, start_host, wait_for


class Ingestion:
    """A loopback Application Insights ingestion endpoint that keeps every envelope."""

    def __init__(self) -> None:
        self.envelopes: list[dict] = []
        self.raw: list[str] = []
        self._lock = threading.Lock()
        self.server = serve_calls(self._receive)

    def _receive(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        if handler.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        text = body.decode()
        items = json.loads(text) if text.startswith("[") else [json.loads(line) for line in text.splitlines() if line]
        with self._lock:
            self.raw.append(text)
            self.envelopes.extend(items)
        answer = {"itemsReceived": len(items), "itemsAccepted": len(items), "errors": []}
        reply(handler, 200, json.dumps(answer).encode(), {"Content-Type": "application/json"})

    @property
    def connection_string(self) -> str:
        port = self.server.server_address[1]
        return f"InstrumentationKey=00000000-0000-4000-8000-000000000000;IngestionEndpoint=http://127.0.0.1:{port}/"

    def properties(self) -> list[dict]:
        return [e["data"]["baseData"].get("properties", {}) for e in self.envelopes if e["data"]["baseType"] == "MessageData"]


@pytest.fixture
def ingestion(monkeypatch):
    monkeypatch.setenv("APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL", "true")
    monitor = logging.getLogger("azure.monitor")
    monitor_level = monitor.level
    monitor.setLevel(logging.ERROR)
    endpoint = Ingestion()
    provider = LoggerProvider()
    provider.add_log_record_processor(
        SimpleLogRecordProcessor(
            AzureMonitorLogExporter(connection_string=endpoint.connection_string, disable_offline_storage=True)
        )
    )
    handler = LoggingHandler(level=logging.INFO, logger_provider=provider)
    logger = logging.getLogger(LOGGER)  # PYTHON_APPLICATIONINSIGHTS_LOGGER_NAME
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield endpoint
    logger.removeHandler(handler)
    logger.setLevel(level)
    monitor.setLevel(monitor_level)
    provider.shutdown()
    shutdown(endpoint.server)


def test_chat_lines_reach_application_insights_with_their_properties(ingestion, app_env, api, tenant, emulator, identity):
    app_env.setenv("GRAPH_INLINE_RETRY_SECONDS", "0")
    app = org_app(tenant)
    blocked, throttled, fine = group_chats(tenant, people(tenant, 3), 3, {app.id: "1.0.0"})
    blocked.blocked.add(app.id)
    emulator.inject(429, 1, kind="getInstalledApps", retry_after=1)

    run_id = api.start(teamsAppId=app.id, chatIds=[blocked.id, throttled.id, fine.id])
    api.wait(run_id)

    # a chat's line is written just after its outcome is recorded, so it may trail the status
    def chat_lines():
        lines = {p["chatId"]: p for p in ingestion.properties() if p.get("event") == "targetOutcome"}
        return lines if len(lines) >= 3 else None

    outcomes = wait_for(chat_lines, timeout=10)
    records = ingestion.properties()
    assert set(outcomes) == {blocked.id, throttled.id, fine.id}
    for props in outcomes.values():
        assert props["runId"] == run_id and props["appId"] == app.id and props["targetVersion"] == "1.1.0"
        assert props["scope"] == "chat" and props["targetId"] == props["chatId"]
    assert outcomes[blocked.id]["outcome"] == "failed"
    assert (outcomes[blocked.id]["graphStatus"], outcomes[blocked.id]["graphCode"]) == ("403", "Forbidden")
    assert outcomes[fine.id]["outcome"] == "upgraded" and outcomes[fine.id]["installedVersion"] == "1.1.0"
    [rescheduled] = [p for p in records if p.get("event") == "rescheduled"]
    assert rescheduled["runId"] == run_id and rescheduled["graphStatus"] == "429" and float(rescheduled["retryAfter"]) >= 1
    assert rescheduled["scope"] == "chat" and rescheduled["targetId"] in {blocked.id, throttled.id, fine.id}
    assert any(p.get("event") == "throttled" and p["bucket"] == "installedApps.get" for p in records)
    assert any(p.get("event") == "runQueued" and p["trigger"] == "api" for p in records)

    everything = "\n".join(ingestion.raw)
    assert emulator.tokens_seen
    for secret in [
        *emulator.tokens_seen,
        identity.header_secret,
        ACCOUNT_KEY,
    ]:
        assert secret not in everything


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_under_a_root_logger_at_info_a_run_logs_only_the_apps_own_events(app_env, tenant, emulator):
    """The Python worker forwards every record that reaches its root logger (at INFO) to the host."""
    root, captured = logging.getLogger(), _Records()
    levels = {name: logging.getLogger(name).level for name in ("", "azure", "msal", "urllib3")}
    for name in ("azure", "msal", "urllib3"):
        logging.getLogger(name).setLevel(logging.NOTSET)  # as in the worker: nothing quieted them
    root.setLevel(logging.INFO)
    root.addHandler(captured)
    try:
        host = start_host()  # loads function_app.py
        try:
            api = Api(host.base_url)
            app = org_app(tenant)
            chats = group_chats(tenant, people(tenant, 2), 3, {app.id: "1.0.0"})
            api.wait(api.start(teamsAppId=app.id, chatIds=[c.id for c in chats]))
        finally:
            host.stop()
    finally:
        root.removeHandler(captured)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
    chatty = [r for r in captured.records if r.levelno < logging.WARNING and not r.name.startswith((LOGGER, "Host"))]
    assert chatty == [], sorted({f"{r.name}: {r.getMessage()[:80]}" for r in chatty})[:5]
    outcomes = [r for r in captured.records if getattr(r, "event", None) == "targetOutcome"]
    assert len(outcomes) == 3  # the app's own events still get through


def test_a_record_logged_by_a_sync_function_carries_its_invocations_operation_id(ingestion, app_env):
    """The worker runs sync functions in a thread pool, where its trace context is not attached."""
    from concurrent.futures import ThreadPoolExecutor

    from devtools.functions_index import InvocationContext, load_app

    _app, specs = load_app(ROOT / "function_app.py")
    [monitor] = [s for s in specs if s.name == "queue_monitor"]
    trace_id, span_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    context = InvocationContext(str(uuid.uuid4()), "queue_monitor", trace_parent=f"00-{trace_id}-{span_id}-01")
    with ThreadPoolExecutor(1) as pool:
        pool.submit(monitor.function, timer=None, context=context).result()
        pool.submit(logging.getLogger(f"{LOGGER}.control").info, "outside any invocation").result()

    messages = [e for e in ingestion.envelopes if e["data"]["baseType"] == "MessageData"]
    inside = [e for e in messages if e["data"]["baseData"].get("properties", {}).get("event") == "queueDepth"]
    assert len(inside) == 6
    for envelope in inside:
        assert envelope["tags"]["ai.operation.id"] == trace_id
        assert envelope["tags"]["ai.operation.parentId"] == span_id
    [outside] = [e for e in messages if e["data"]["baseData"]["message"] == "outside any invocation"]
    assert outside["tags"].get("ai.operation.id") != trace_id  # the context ends with the invocation
