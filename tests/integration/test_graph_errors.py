"""How the Graph client classifies a 400: Teams' backend failing (retried after a re-check, like a
5xx) or the request being wrong (final). The recognised messages, then the client against the
Graph emulator's answers."""

from __future__ import annotations

import os

import pytest

from devtools.graph_emulator import CHAT_SERVICE_FAILURE, RSC_MISMATCH, SETTINGS_STORE_FAILURE
from devtools.tenant import Refusal
from shared.foundation.errors import GraphBackendFailure, GraphError, GraphRetryable, GraphUnavailable
from shared.graph.backend import BACKEND_RETRY_SECONDS, backend_failure
from shared.graph.client import GraphClient, managed_identity_tokens, segment
from tests.support import group_chats, org_app, people

# Graph's messages as public issue threads quote them (identifiers shortened)
CHAT_SERVICE = "Failed to execute Skype backend request CreateThreadRequest."
CHAT_SERVICE_IN_ENTITLEMENT = (
    "Exception in CreateOrUpdateUserAppEntitlementAsync while sending app status update event to Chat Service for bot "
    "installation. UserId: 'u', AppId: 'a', ExternalId: 'e', Exception: 'Microsoft.SkypeSpaces.MiddleTier.Common."
    "ServiceException: Failed to execute Skype backend request CreateThreadRequest.\r\n   at Microsoft.Skype.Chat..."
)
SETTINGS_STORE = (
    "Failed to execute settings store request: https://amer.settings.teams.internal.office.com/v1.0/settings/teams/"
    "tenants/t/appentitlements, StatusCode: 400, ReasonPhrase: Schema validation errors, X-MSEdge-Ref: r"
)
SETTINGS_STORE_IN_ENTITLEMENT = (
    "Exception in CreateOrUpdateUserAppEntitlementForTeamsAsync. UserId: u, AppId: 'a', ExternalId: '', Exception(s): "
    "'Microsoft.SkypeSpaces.MiddleTier.Common.ServiceException: Failed to execute settings store request: "
    "https://amer.settings.teams.internal.office.com/v1.0/settings/teams/users/u/appentitlements, StatusCode: 400, "
    "ReasonPhrase: Schema validation errors, X-MSEdge-Ref: r\r\n   at Microsoft.SkypeSpaces.MiddleTier..."
)


@pytest.mark.parametrize(
    ("message", "what"),
    [
        (CHAT_SERVICE, "Teams chat service"),
        ("Failed to execute Skype backend request GetThreadS2SRequest.", "Teams chat service"),
        (CHAT_SERVICE_IN_ENTITLEMENT, "Teams chat service"),
        (SETTINGS_STORE, "Teams settings store"),
        (SETTINGS_STORE_IN_ENTITLEMENT, "Teams settings store"),
    ],
)
def test_a_400_saying_a_teams_backend_request_failed_is_a_backend_failure(message, what):
    assert backend_failure(400, message) == what


@pytest.mark.parametrize(
    "message",
    [
        RSC_MISMATCH,
        "ResourceSpecificPermissionsMismatch",
        "Invalid id 'a6b63365-31a4-4f43-92ec-710b71557af9' provided.",
        "Unable to read JSON request payload.",
        "Failed to execute settings store request: https://x/appentitlements, StatusCode: 404, ReasonPhrase: Not Found",
        "Skype backend",
        "",
    ],
)
def test_every_other_400_is_the_request_being_wrong(message):
    assert backend_failure(400, message) is None


def test_only_a_400_can_be_a_backend_failure():
    # a 403 or 404 with such a text is about permissions or a missing resource; 5xx are retried anyway
    assert [backend_failure(status, CHAT_SERVICE) for status in (403, 404, 409, 500, None)] == [None] * 5


def test_the_inner_errors_message_counts_too():
    assert backend_failure(400, "Bad request.", SETTINGS_STORE) == "Teams settings store"


def test_the_emulators_texts_are_recognised_without_the_app_and_emulator_sharing_them():
    # written separately (devtools imports nothing from shared): each side reads the issue threads
    assert backend_failure(400, CHAT_SERVICE_FAILURE) and backend_failure(400, SETTINGS_STORE_FAILURE)
    assert backend_failure(400, RSC_MISMATCH) is None


# ---- the client against the Graph emulator ----------------------------------------------------------


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
