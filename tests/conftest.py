"""Real parts for every test: Azurite (started here on free ports), the loopback managed-identity
endpoint used through azure-identity, the loopback Graph emulator, and the local Functions host
that drives function_app.py through its declared bindings."""

from __future__ import annotations

import logging
import os

import pytest

from devtools.azurite import Azurite
from devtools.graph_emulator import GraphEmulator
from devtools.graph_limits import Limits
from devtools.identity import IdentityEndpoint
from devtools.tenant import Tenant
from shared import bootstrap
from tests.support import ALL_SCOPES, NEVER, Api, start_host

FAST_RPS = 300  # functional tests: pacing out of the way; the per-chat limit still applies


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


@pytest.fixture
def scoped(app_env):
    """Every scope upgraded (UPGRADE_SCOPES), before the host starts."""
    app_env.setenv("UPGRADE_SCOPES", ALL_SCOPES)
    return app_env


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
