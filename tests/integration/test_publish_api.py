"""POST /api/publish and GET /api/runs/{runId}: the contract, and every bad input."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from azure.storage.queue import QueueServiceClient

from shared.foundation.storage import CONTROL_QUEUE

APP = str(uuid.uuid4())
CHAT = "19:0f6d2c6c61d44a83b0e1f6e7d1c2a3b4@thread.v2"
TEAM = "02bd9fd6-8f93-4758-87c3-1fb73740a315"


def control_messages(azurite) -> int:
    queue = QueueServiceClient.from_connection_string(azurite.connection_string).get_queue_client(CONTROL_QUEUE)
    try:
        return queue.get_queue_properties().approximate_message_count
    except Exception:
        return 0


BAD_BODIES = [
    ("not json", b"{teamsAppId:", "invalidJson"),
    ("array", json.dumps([APP]).encode(), "invalidBody"),
    ("string", b'"hello"', "invalidBody"),
    ("number", b"42", "invalidBody"),
    ("null", b"null", "invalidBody"),
    ("neither id", json.dumps({"version": "1.0.0"}).encode(), "invalidAppId"),
    ("both ids", json.dumps({"teamsAppId": APP, "externalId": "x"}).encode(), "invalidAppId"),
    ("malformed guid", json.dumps({"teamsAppId": "not-a-guid"}).encode(), "invalidTeamsAppId"),
    ("guid with braces", json.dumps({"teamsAppId": "{" + APP + "}"}).encode(), "invalidTeamsAppId"),
    ("id of wrong type", json.dumps({"teamsAppId": 12}).encode(), "invalidTeamsAppId"),
    ("empty external id", json.dumps({"externalId": " "}).encode(), "invalidExternalId"),
    ("external id of wrong type", json.dumps({"externalId": ["a"]}).encode(), "invalidExternalId"),
    ("version of wrong type", json.dumps({"teamsAppId": APP, "version": 1.4}).encode(), "invalidVersion"),
    ("version not a version", json.dumps({"teamsAppId": APP, "version": "latest"}).encode(), "invalidVersion"),
    ("dryRun as string", json.dumps({"teamsAppId": APP, "dryRun": "true"}).encode(), "invalidDryRun"),
    ("chatIds not a list", json.dumps({"teamsAppId": APP, "chatIds": CHAT}).encode(), "invalidChatIds"),
    ("chatIds empty", json.dumps({"teamsAppId": APP, "chatIds": []}).encode(), "invalidChatIds"),
    (
        "chatIds too many",
        json.dumps({"teamsAppId": APP, "chatIds": [f"19:{i}@thread.v2" for i in range(10_001)]}).encode(),
        "invalidChatIds",
    ),
    ("chat id not a string", json.dumps({"teamsAppId": APP, "chatIds": [7]}).encode(), "invalidChatId"),
    ("chat id not 19:...@...", json.dumps({"teamsAppId": APP, "chatIds": ["chat-1"]}).encode(), "invalidChatId"),
    ("unknown field", json.dumps({"teamsAppId": APP, "chatIDs": [CHAT]}).encode(), "unknownField"),
    ("scopes not a list", json.dumps({"teamsAppId": APP, "scopes": "chat"}).encode(), "invalidScopes"),
    ("scopes empty", json.dumps({"teamsAppId": APP, "scopes": []}).encode(), "invalidScopes"),
    ("scopes unknown", json.dumps({"teamsAppId": APP, "scopes": ["chat", "channel"]}).encode(), "invalidScopes"),
    ("scopes repeated", json.dumps({"teamsAppId": APP, "scopes": ["team", "team"]}).encode(), "invalidScopes"),
    ("scopes with ids", json.dumps({"teamsAppId": APP, "scopes": ["chat"], "chatIds": [CHAT]}).encode(), "invalidScopes"),
    ("teamIds not a list", json.dumps({"teamsAppId": APP, "teamIds": TEAM}).encode(), "invalidTeamIds"),
    ("teamIds empty", json.dumps({"teamsAppId": APP, "teamIds": []}).encode(), "invalidTeamIds"),
    ("team id not a guid", json.dumps({"teamsAppId": APP, "teamIds": [TEAM, "sales"]}).encode(), "invalidTeamId"),
    ("team id not a string", json.dumps({"teamsAppId": APP, "teamIds": [7]}).encode(), "invalidTeamId"),
    ("userIds not a list", json.dumps({"teamsAppId": APP, "userIds": {"id": TEAM}}).encode(), "invalidUserIds"),
    ("user id is a upn", json.dumps({"teamsAppId": APP, "userIds": ["ada@contoso.example"]}).encode(), "invalidUserId"),
    (
        "too many ids together",
        json.dumps(
            {
                "teamsAppId": APP,
                "chatIds": [CHAT] * 2,
                "teamIds": [TEAM] * 2,
                "userIds": [str(uuid.uuid4()) for _ in range(9_999)],
            }
        ).encode(),
        "tooManyIds",
    ),
]
ROLLOUT = {"steps": [{"upgrade": {"targets": 5}}, {"pause": {}}]}
BAD_BODIES += [
    ("rollout not an object", json.dumps({"teamsAppId": APP, "rollout": [ROLLOUT]}).encode(), "invalidRollout"),
    ("rollout of no steps", json.dumps({"teamsAppId": APP, "rollout": {"steps": []}}).encode(), "invalidRollout"),
    ("rollout step unknown", json.dumps({"teamsAppId": APP, "rollout": {"steps": [{"wait": {}}]}}).encode(), "invalidRollout"),
    (
        "rollout bake not a duration",
        json.dumps({"teamsAppId": APP, "rollout": {"steps": [{"pause": {"duration": "4h"}}]}}).encode(),
        "invalidRollout",
    ),
    (
        "rollout window unknown zone",
        json.dumps(
            {"teamsAppId": APP, "rollout": {**ROLLOUT, "window": {"timeZone": "Mars/Base", "start": "20:00", "end": "06:00"}}}
        ).encode(),
        "invalidRollout",
    ),
    (
        "rollout with canary",
        json.dumps({"teamsAppId": APP, "rollout": ROLLOUT, "canary": {"targets": 5}}).encode(),
        "rolloutWithCanary",
    ),
    ("rollout with dryRun", json.dumps({"teamsAppId": APP, "rollout": ROLLOUT, "dryRun": True}).encode(), "rolloutWithDryRun"),
    ("groupId not a guid", json.dumps({"teamsAppId": APP, "groupId": "pilots"}).encode(), "invalidGroupId"),
    ("groupId with ids", json.dumps({"teamsAppId": APP, "groupId": TEAM, "chatIds": [CHAT]}).encode(), "groupWithIds"),
]
BAD_CHARACTERS = ["/", "?", "#", "%", " ", "\t", "\n", "\x00", "\x1f", "\x7f", "\u2028", "\u00a0", "\u200b"]


@pytest.mark.parametrize(("case", "body", "code"), BAD_BODIES, ids=[c[0] for c in BAD_BODIES])
def test_bad_body_is_a_400_with_a_json_error_and_starts_nothing(api, azurite, case, body, code):
    response = api.publish(data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    assert set(error) == {"code", "message"}
    assert control_messages(azurite) == 0


def test_an_invalid_id_is_named_by_its_index(api):
    for field, ids, code in (("teamIds", [TEAM, TEAM, "x"], "invalidTeamId"), ("userIds", [TEAM, None], "invalidUserId")):
        response = api.publish({"teamsAppId": APP, field: ids})
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == code and f"{field}[{len(ids) - 1}]" in error["message"]


def test_a_scope_the_deployment_does_not_upgrade_is_refused(api, azurite):
    for body in ({"teamsAppId": APP, "scopes": ["chat", "team"]}, {"teamsAppId": APP, "teamIds": [TEAM]}):
        response = api.publish(body)
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == "scopeNotEnabled" and "team" in error["message"] and "UPGRADE_SCOPES" in error["message"]
    assert control_messages(azurite) == 0


@pytest.mark.parametrize("char", BAD_CHARACTERS, ids=[f"U+{ord(c):04X}" for c in BAD_CHARACTERS])
def test_chat_id_with_a_forbidden_character_is_rejected(api, char):
    chat_id = f"19:abc{char}def@thread.v2"
    response = api.publish({"teamsAppId": APP, "chatIds": [CHAT, chat_id]})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalidChatId"
    assert "chatIds[1]" in error["message"]


def test_body_over_one_mebibyte_is_a_413(api, azurite):
    padding = "x" * (1024 * 1024)
    response = api.publish(data=json.dumps({"teamsAppId": APP, "externalId": padding}).encode())
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payloadTooLarge"
    assert control_messages(azurite) == 0


def test_publish_answers_202_with_location_and_one_control_message(api, azurite):
    response = api.publish({"teamsAppId": APP.upper(), "chatIds": [CHAT], "dryRun": True})
    assert response.status_code == 202
    body = response.json()
    assert set(body) == {"runId", "statusUrl"}
    assert response.headers["Location"] == body["statusUrl"] == f"{api.base_url}/api/runs/{body['runId']}"
    assert control_messages(azurite) <= 1  # the host may already have taken it


def test_publish_of_ten_thousand_chats_answers_in_milliseconds(api):
    chats = [f"19:{i:032x}@thread.v2" for i in range(10_000)]
    api.publish({"teamsAppId": APP, "chatIds": chats[:1]})  # warm the connection and the tables
    started = time.perf_counter()
    response = api.publish({"teamsAppId": APP, "chatIds": chats, "dryRun": True})
    elapsed = time.perf_counter() - started
    assert response.status_code == 202
    assert elapsed < 1.0, f"publish of 10,000 chats took {elapsed:.3f} s"


def test_status_of_an_unknown_run_is_404(api):
    for run_id in (uuid.uuid4().hex, "not-a-run", "%2e%2e"):
        response = api.session.get(f"{api.base_url}/api/runs/{run_id}")
        assert response.status_code == 404, run_id
        assert response.json()["error"]["code"] == "runNotFound"


def test_status_of_a_new_run_shows_the_contract_shape(api):
    run_id = api.start(teamsAppId=APP, chatIds=[CHAT])
    status = api.status(run_id)
    assert set(status) >= {
        "runId",
        "teamsAppId",
        "targetVersion",
        "dryRun",
        "state",
        "counts",
        "failures",
        "error",
        "createdAt",
        "updatedAt",
    }
    assert status["runId"] == run_id
    outcomes = {"upgraded", "wouldUpgrade", "alreadyCurrent", "notInstalled", "failed", "cancelled"}
    assert set(status["counts"]) == {"targets", *outcomes, "pending"}
    assert status["state"] in ("queued", "discovering", "upgrading", "failed", "completed")
    assert (status["trigger"], status["retryOf"], status["canary"], status["pause"]) == ("api", None, None, None)
    assert status["startedBy"] == {"objectId": None, "name": "function key"}


def test_a_malformed_setting_is_a_500_that_names_it(api, app_env):
    from shared import bootstrap

    app_env.setenv("GRAPH_MAX_RPS", "lots")
    bootstrap.reset()
    response = api.publish({"teamsAppId": APP})
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "configurationError"
    assert "GRAPH_MAX_RPS" in response.json()["error"]["message"]


def test_the_health_check_says_healthy_and_the_release(api):
    from shared import __version__

    response = api.session.get(f"{api.base_url}/api/health")
    assert response.status_code == 200 and response.json() == {"status": "healthy", "version": __version__}
