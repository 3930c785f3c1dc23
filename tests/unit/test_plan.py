"""Rollout plans and canaries: what is accepted, and every malformed plan refused naming its field."""

from __future__ import annotations

import pytest

from shared.domain.plan import PauseStep, Plan, PlanError, UpgradeStep, parse_canary, parse_rollout

EXAMPLE = {
    "steps": [
        {"upgrade": {"targets": 50}},
        {"pause": {}},
        {"upgrade": {"percent": 10}},
        {"pause": {"duration": "PT24H"}},
        {"upgrade": {"percent": 50}},
        {"pause": {"duration": "PT4H"}},
    ],
    "maxFailedPercent": 2,
    "window": {"timeZone": "Europe/Berlin", "days": ["Mon", "Tue", "Wed", "Thu"], "start": "20:00", "end": "06:00"},
}


def test_the_example_plan_parses_and_round_trips():
    plan = parse_rollout(EXAMPLE)
    assert plan.steps == (
        UpgradeStep(targets=50),
        PauseStep(),
        UpgradeStep(percent=10.0),
        PauseStep("PT24H"),
        UpgradeStep(percent=50.0),
        PauseStep("PT4H"),
    )
    assert plan.max_failed_percent == 2.0 and plan.window is not None
    assert plan.to_dict() == {
        **EXAMPLE,
        "maxFailedPercent": 2.0,
        "steps": [
            *EXAMPLE["steps"][:2],
            {"upgrade": {"percent": 10.0}},
            EXAMPLE["steps"][3],
            {"upgrade": {"percent": 50.0}},
            EXAMPLE["steps"][5],
        ],
    }
    assert Plan.from_stored(plan.stored()) == plan


def test_percent_limits_round_up_and_targets_are_cumulative():
    assert UpgradeStep(percent=10).limit(305) == 31
    assert UpgradeStep(percent=50).limit(10) == 5
    assert UpgradeStep(percent=100).limit(7) == 7
    assert UpgradeStep(targets=50).limit(7) == 50


def test_a_canary_is_the_one_step_plan():
    plan = parse_canary({"targets": 5, "maxFailedPercent": 20, "pause": True})
    assert plan.steps == (UpgradeStep(targets=5), PauseStep()) and plan.is_canary
    assert plan.canary_dict() == {"targets": 5, "maxFailedPercent": 20.0, "pause": True}
    assert Plan.from_stored(plan.stored()) == plan
    assert parse_canary({"targets": 3}).steps == (UpgradeStep(targets=3),)


def test_the_failure_budget_is_more_than_p_percent_of_the_decided():
    plan = parse_rollout({"steps": [{"upgrade": {"targets": 10}}], "maxFailedPercent": 20})
    assert not plan.failed_too_many(10, 2) and plan.failed_too_many(10, 3) and not plan.failed_too_many(0, 0)
    assert parse_rollout({"steps": [{"upgrade": {"targets": 1}}]}).failed_too_many(50, 1)  # default 0


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        ([], "rollout must be an object"),
        ({}, r"rollout.steps must be an array of 1 to 20"),
        ({"steps": []}, r"rollout.steps must be an array of 1 to 20"),
        ({"steps": [{"pause": {}}] * 21}, r"rollout.steps must be an array of 1 to 20"),
        ({"steps": [{"wait": {}}]}, r"rollout.steps\[0\] is an unknown step 'wait'"),
        ({"steps": [{"upgrade": {}, "pause": {}}]}, r"rollout.steps\[0\] must be an object with one key"),
        ({"steps": ["upgrade"]}, r"rollout.steps\[0\] must be an object with one key"),
        ({"steps": [{"upgrade": {"targets": 0}}]}, r"rollout.steps\[0\].upgrade.targets must be an integer from 1"),
        ({"steps": [{"upgrade": {"targets": 2.5}}]}, r"rollout.steps\[0\].upgrade.targets must be an integer"),
        ({"steps": [{"upgrade": {"percent": 0}}]}, r"rollout.steps\[0\].upgrade.percent must be a number from 1 to 100"),
        ({"steps": [{"upgrade": {"percent": 0.5}}]}, r"upgrade.percent must be a number from 1 to 100"),
        ({"steps": [{"upgrade": {"percent": 101}}]}, r"upgrade.percent must be a number from 1 to 100"),
        ({"steps": [{"upgrade": {"percent": 5, "targets": 5}}]}, "exactly one of targets and percent"),
        ({"steps": [{"upgrade": {"share": 5}}]}, r"upgrade has unknown key\(s\) share"),
        (
            {"steps": [{"upgrade": {"targets": 1}}, {"pause": {"duration": "4 hours"}}]},
            r"steps\[1\].pause.duration .* not an ISO 8601",
        ),
        ({"steps": [{"pause": {"duration": "PT0S"}}]}, "longer than zero"),
        ({"steps": [{"pause": {"for": "PT1H"}}]}, r"pause has unknown key\(s\) for"),
        ({"steps": [{"pause": {}}], "maxFailedPercent": 150}, r"rollout.maxFailedPercent must be a number from 0 to 100"),
        ({"steps": [{"pause": {}}], "maxFailedPercent": True}, r"rollout.maxFailedPercent"),
        ({"steps": [{"pause": {}}], "canary": {}}, r"rollout has unknown key\(s\) canary"),
        (
            {"steps": [{"pause": {}}], "window": {"timeZone": "Nowhere/City", "start": "20:00", "end": "06:00"}},
            r"rollout.window.timeZone 'Nowhere/City' is not a known",
        ),
        ({"steps": [{"pause": {}}], "window": {"timeZone": "UTC", "start": "25:00", "end": "06:00"}}, r"rollout.window.start"),
        (
            {"steps": [{"pause": {}}], "window": {"timeZone": "UTC", "start": "20:00", "end": "06:00", "days": ["Funday"]}},
            r"rollout.window.days holds 'Funday'",
        ),
        ({"steps": [{"pause": {}}], "window": {"timeZone": "UTC", "end": "06:00"}}, r"rollout.window.start is required"),
        ({"steps": [{"pause": {}}], "window": {"timeZone": "UTC", "start": "20:00"}}, r"rollout.window.end is required"),
    ],
)
def test_every_malformed_plan_names_its_field(plan, message):
    with pytest.raises(PlanError, match=message):
        parse_rollout(plan)


@pytest.mark.parametrize(
    ("canary", "message"),
    [
        ("5", "canary must be an object"),
        ({"targets": 0}, "canary.targets must be an integer from 1 to 10000"),
        ({"targets": 10_001}, "canary.targets must be an integer from 1 to 10000"),
        ({"targets": 5, "maxFailedPercent": -1}, "canary.maxFailedPercent"),
        ({"targets": 5, "pause": "yes"}, "canary.pause must be true or false"),
        ({"targets": 5, "size": 3}, r"Unknown canary field\(s\): size"),
    ],
)
def test_every_malformed_canary_is_refused(canary, message):
    with pytest.raises(PlanError, match=message):
        parse_canary(canary)
