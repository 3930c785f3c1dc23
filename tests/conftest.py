"""Real parts for every test: Azurite (started here on free ports), the loopback managed-identity
endpoint used through azure-identity, the loopback Graph emulator, and the local Functions host
that drives function_app.py through its declared bindings."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable

import pytest
import requests

from devtools.azurite import ACCOUNT_KEY, Azurite
from devtools.funchost import LocalHost
from devtools.graph_emulator import GraphEmulator
from devtools.graph_limits import Limits
from devtools.identity import IdentityEndpoint
from devtools.tenant import Tenant
from shared import bootstrap

FAST_RPS = 300  # functional tests: pacing out of the way; the per-chat limit still applies
NEVER = "0 0 0 1 1 *"  # NCRONTAB: once a year


@pytest.fixture(scope="session")
def azurite():
    with Azurite() as instance:
        yield instance


@pytest.fixture(scope="session")
def identity():
    endpoint = IdentityEndpoint().start()
    yield endpoint
    endpoint.stop()


@pytest.fixture
def tenant() -> Tenant:
    return Tenant(seed=11)


@pytest.fixture
def emulator(tenant, identity):
    emu = GraphEmulator(
        tenant, authority=identity.authority, limits=Limits(bucket_rps=FAST_RPS, directory_rps=FAST_RPS, retry_after=1)
    )
    emu.start()
    yield emu
    emu.stop()


@pytest.fixture
def app_env(monkeypatch, azurite, identity, emulator):
    """The Function App's settings, pointing at the local parts; storage starts empty."""
    for name in list(os.environ):
        if name.startswith(("AzureWebJobsStorage", "AZURE_", "MSI_", "IDENTITY_", "IMDS_")) or name in (
            "DISCOVERY_GROUP_ID",
            "UPGRADE_SCOPES",
        ):
            monkeypatch.delenv(name, raising=False)
    for key, value in identity.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    monkeypatch.setenv("GRAPH_BASE_URL", emulator.base_url)
    monkeypatch.setenv("GRAPH_MAX_RPS", str(FAST_RPS))
    monkeypatch.setenv("CATALOG_WATCH_SCHEDULE", NEVER)  # tests fire the timers themselves
    monkeypatch.setenv("SUBSCRIPTION_SCHEDULE", NEVER)
    monkeypatch.setenv("QUEUE_MONITOR_SCHEDULE", NEVER)
    monkeypatch.setenv("RUN_KEEPER_SCHEDULE", NEVER)
    monkeypatch.setenv("RETENTION_SCHEDULE", NEVER)
    azurite.clear()
    bootstrap.reset()
    yield monkeypatch
    bootstrap.reset()


class Api:
    """The HTTP API of a running host, as a client sees it."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()

    def publish(self, body=None, *, data: bytes | None = None, headers: dict | None = None) -> requests.Response:
        if data is not None:
            return self.session.post(f"{self.base_url}/api/publish", data=data, headers=headers or {})
        return self.session.post(f"{self.base_url}/api/publish", json=body)

    def start(self, **body) -> str:
        response = self.publish(body)
        assert response.status_code == 202, response.text
        return response.json()["runId"]

    def status(self, run_id: str) -> dict:
        response = self.session.get(f"{self.base_url}/api/runs/{run_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def act(self, run_id: str, action: str) -> requests.Response:
        """POST /api/runs/{runId}/cancel, /resume or /retry."""
        return self.session.post(f"{self.base_url}/api/runs/{run_id}/{action}")

    def runs(self, **params) -> requests.Response:
        return self.session.get(f"{self.base_url}/api/runs", params=params)

    def wait(self, run_id: str, timeout: float = 60.0, until: Callable[[dict], bool] | None = None) -> dict:
        """Polls the run status until it is final (or `until` holds)."""
        until = until or (lambda s: s["state"] in ("completed", "failed", "cancelled") and s["counts"]["pending"] == 0)
        deadline = time.monotonic() + timeout
        while True:
            status = self.status(run_id)
            if until(status):
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"run {run_id} not done after {timeout} s: {status}")
            time.sleep(0.1)


def unreachable_storage() -> str:
    """A connection string whose endpoints refuse connections: storage that is down."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    endpoint = f"http://127.0.0.1:{port}/devstoreaccount1"
    return (
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={ACCOUNT_KEY};"
        f"QueueEndpoint={endpoint};TableEndpoint={endpoint};"
    )


def wait_for(condition: Callable[[], object], timeout: float = 30.0):
    """Polls `condition` until it returns something truthy, and returns that."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)
    return result


def tight_limits(emulator: GraphEmulator, env, limit: int) -> None:
    """Graph's limits, and GRAPH_MAX_RPS, at `limit` requests per second per bucket."""
    emulator.limits = Limits(bucket_rps=limit, directory_rps=limit, retry_after=1)
    emulator.throttle.limits = emulator.limits
    env.setenv("GRAPH_MAX_RPS", str(limit))


def run_killing_a_worker(emulator: GraphEmulator, start: Callable[[Api], str], dies_on: Callable[[str], bool]) -> dict:
    """Runs on one worker process, which is killed (SIGKILL) while Graph holds the response to the
    first upgrade of a resource `dies_on` accepts, after the upgrade was applied; another worker
    takes over. Returns the final status."""
    applied, release = threading.Event(), threading.Event()

    def hold(resource_id: str) -> None:
        if dies_on(resource_id) and not applied.is_set():
            applied.set()
            release.wait(30)  # the worker dies while waiting for this response

    emulator.on_upgrade = hold
    host = start_host(queue_workers=1, lease=2.0)
    try:
        api = Api(host.base_url)
        run_id = start(api)
        assert applied.wait(30), "no upgrade reached Graph"
        victim = host.workers[0]
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        host.workers.append(host.spawn_worker())
        release.set()
        return api.wait(run_id, timeout=60)
    finally:
        release.set()
        host.stop()


def start_host(**options) -> LocalHost:
    options.setdefault("http_port", 0)
    options.setdefault("queue_overrides", {"max_polling_interval": 0.2})
    return LocalHost(**options).start()


@pytest.fixture
def host(app_env):
    instance = start_host()
    yield instance
    instance.stop()


@pytest.fixture
def api(host) -> Api:
    return Api(host.base_url)


@pytest.fixture(autouse=True)
def _quiet_azure_logs():
    logging.getLogger("azure").setLevel(logging.WARNING)
