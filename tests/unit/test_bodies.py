"""POST /api/publish bodies: what is accepted, and each rule a body can break, as the error code
and the message that names the field (the route's 400s end to end are in the integration lane)."""

from __future__ import annotations

import json

import pytest

from shared.domain.plan import PauseStep, UpgradeStep
from shared.domain.targets import Target
from shared.foundation.errors import RequestError
from shared.http.bodies import MAX_BODY_BYTES, check_enabled, parse_publish

APP = "8a5c2e47-1f0b-4e36-9d21-7c3b5a9e0d14"
TEAM = "1709d956-89d8-4e11-8eab-8878e9dce423"
CHAT = "19:4b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e@thread.v2"


def parsed(**body):
    return parse_publish(json.dumps(body).encode())


def refused(body) -> RequestError:
    with pytest.raises(RequestError) as caught:
        parse_publish(body if isinstance(body, bytes) else json.dumps(body).encode())
    return caught.value


def test_the_smallest_body_discovers_in_the_deployments_scopes():
    request = parsed(teamsAppId=APP.upper())
    assert request.teams_app_id == APP and request.targets is None and request.scopes is None and request.plan is None
    assert request.run_scopes is None


def test_ids_make_the_run_target_exactly_them_in_their_scopes():
    request = parsed(externalId="com.contoso.x", chatIds=[CHAT, CHAT], userIds=[TEAM.upper()])
    assert request.targets == [Target("chat", CHAT), Target("personal", TEAM)]
    assert request.run_scopes == ("chat", "personal")


def test_a_rollout_a_canary_and_a_group():
    rollout = parsed(teamsAppId=APP, rollout={"steps": [{"upgrade": {"percent": 10}}, {"pause": {"duration": "pt1h"}}]})
    assert rollout.plan.steps == (UpgradeStep(percent=10.0), PauseStep("PT1H")) and not rollout.plan.is_canary
    assert parsed(teamsAppId=APP, canary={"targets": 3}).plan.is_canary
    assert parsed(teamsAppId=APP, groupId=TEAM.upper()).group_id == TEAM


@pytest.mark.parametrize(
    ("body", "code", "named"),
    [
        (b"{", "invalidJson", "JSON"),
        ([], "invalidBody", "object"),
        ({"teamsAppId": APP, "chatIDs": []}, "unknownField", "chatIDs"),
        ({}, "invalidAppId", "exactly one"),
        ({"teamsAppId": APP, "externalId": "x"}, "invalidAppId", "exactly one"),
        ({"teamsAppId": "x"}, "invalidTeamsAppId", "GUID"),
        ({"externalId": "a\u0007b"}, "invalidExternalId", "control character"),
        ({"externalId": "x" * 257}, "invalidExternalId", "256"),
        ({"teamsAppId": APP, "version": "v1"}, "invalidVersion", "1.4.0"),
        ({"teamsAppId": APP, "dryRun": 1}, "invalidDryRun", "true or false"),
        ({"teamsAppId": APP, "scopes": ["channel"]}, "invalidScopes", "distinct values"),
        ({"teamsAppId": APP, "scopes": ["chat"], "chatIds": [CHAT]}, "invalidScopes", "must be absent"),
        ({"teamsAppId": APP, "chatIds": [CHAT, "19:a/b@thread.v2"]}, "invalidChatId", "chatIds[1]"),
        ({"teamsAppId": APP, "chatIds": ["19:a b@thread.v2"]}, "invalidChatId", "not allowed"),
        ({"teamsAppId": APP, "chatIds": ["19:" + "a" * 600 + "@x"]}, "invalidChatId", "longer than 512"),
        ({"teamsAppId": APP, "teamIds": [TEAM, "sales"]}, "invalidTeamId", "teamIds[1]"),
        ({"teamsAppId": APP, "userIds": []}, "invalidUserIds", "between 1 and 10000"),
        ({"teamsAppId": APP, "canary": {"targets": 0}}, "invalidCanary", "canary.targets"),
        ({"teamsAppId": APP, "canary": {"targets": 1}, "dryRun": True}, "canaryWithDryRun", "dryRun"),
        ({"teamsAppId": APP, "rollout": {"steps": [{"upgrade": {}}]}}, "invalidRollout", "rollout.steps[0].upgrade"),
        ({"teamsAppId": APP, "rollout": {"steps": [{"pause": {}}]}, "canary": {"targets": 1}}, "rolloutWithCanary", "canary"),
        ({"teamsAppId": APP, "rollout": {"steps": [{"pause": {}}]}, "dryRun": True}, "rolloutWithDryRun", "dryRun"),
        ({"teamsAppId": APP, "groupId": "pilots"}, "invalidGroupId", "GUID"),
        ({"teamsAppId": APP, "groupId": TEAM, "teamIds": [TEAM]}, "groupWithIds", "ids"),
    ],
)
def test_each_broken_rule_is_a_400_naming_the_field(body, code, named):
    error = refused(body)
    assert (error.status, error.info.code) == (400, code)
    assert named in error.info.message


def test_over_a_mebibyte_is_a_413():
    error = refused(b" " * (MAX_BODY_BYTES + 1))
    assert (error.status, error.info.code) == (413, "payloadTooLarge")


def test_too_many_ids_together():
    body = {
        "teamsAppId": APP,
        "chatIds": [CHAT],
        "teamIds": [TEAM],
        "userIds": [f"{i:08x}-0000-4000-8000-000000000000" for i in range(9_999)],
    }
    assert refused(body).info.code == "tooManyIds"


def test_a_scope_the_deployment_does_not_upgrade_is_refused():
    with pytest.raises(RequestError, match="does not upgrade the team scope") as caught:
        check_enabled(parsed(teamsAppId=APP, teamIds=[TEAM]), ("chat",))
    assert caught.value.info.code == "scopeNotEnabled"
    check_enabled(parsed(teamsAppId=APP, chatIds=[CHAT]), ("chat",))
