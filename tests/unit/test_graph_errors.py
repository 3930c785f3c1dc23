"""How a Graph 400 is classified: Teams' backend failing (retried after a re-check, like a 5xx) or
the request being wrong (final), by the messages Graph is known to send. The client against the
Graph emulator's answers: tests/integration/test_graph_errors.py."""

from __future__ import annotations

import pytest

from devtools.graph_emulator import CHAT_SERVICE_FAILURE, RSC_MISMATCH, SETTINGS_STORE_FAILURE
from shared.graph.backend import backend_failure

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
