"""The Graph client against the Graph emulator's answers: a 400 from Teams' backend is retried
after a re-check, like a 5xx; every other 400 is final. The recognised messages themselves:
tests/unit/test_graph_errors.py."""

from __future__ import annotations

import os

import pytest

from devtools.graph_emulator import CHAT_SERVICE_FAILURE, RSC_MISMATCH
from devtools.tenant import Refusal
from shared.foundation.errors import GraphBackendFailure, GraphError, GraphRetryable, GraphUnavailable
from shared.graph.backend import BACKEND_RETRY_SECONDS
from shared.graph.client import GraphClient, managed_identity_tokens, segment
from tests.support import group_chats, org_app, people


@pytest.fixture
def graph(monkeypatch, identity, emulator) -> GraphClient:
    for name in list(os.environ):
        if name.startswith(("AZURE_", "MSI_", "IDENTITY_", "IMDS_")):
            monkeypatch.delenv(name, raising=False)
    for key, value in identity.env().items():
        monkeypatch.setenv(key, value)
    return GraphClient(base_url=emulator.base_url, tokens=managed_identity_tokens(None), inline_retry_seconds=0)


def upgrade(graph: GraphClient, chat, app_id: str) -> None:
    path = f"/chats/{segment(chat.id)}/installedApps/{segment(chat.installation_id(app_id))}/upgrade"
    graph.post(path, {}, bucket="test", retry_unavailable=False)


def test_a_backend_400_on_a_post_is_raised_as_unavailable_with_a_short_wait(graph, tenant, emulator):
    app = org_app(tenant)
    chat = group_chats(tenant, people(tenant, 2), 1, {app.id: "1.0.0"})[0]
    chat.refusal = Refusal(CHAT_SERVICE_FAILURE)
    with pytest.raises(GraphBackendFailure) as failed:
        upgrade(graph, chat, app.id)
    error = failed.value
    assert isinstance(error, GraphUnavailable)  # "may have been applied": re-checked before any new POST
    assert (error.status, error.code, error.message) == (400, "BadRequest", CHAT_SERVICE_FAILURE)
    assert error.retry_after == BACKEND_RETRY_SECONDS and error.request_id
    assert len(emulator.requests(kind="upgrade")) == 1  # not retried blindly by the client


def test_a_plain_400_on_a_post_is_final(graph, tenant, emulator):
    app = org_app(tenant)
    chat = group_chats(tenant, people(tenant, 2), 1, {app.id: "1.0.0"})[0]
    chat.refusal = Refusal(RSC_MISMATCH, times=None)
    with pytest.raises(GraphError) as failed:
        upgrade(graph, chat, app.id)
    assert not isinstance(failed.value, GraphRetryable)
    assert (failed.value.status, failed.value.code, failed.value.message) == (400, "BadRequest", RSC_MISMATCH)
