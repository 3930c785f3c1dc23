"""The steering rules: given a run's plan, its counters and the time, what may happen now (the gate)
and what comes next (advance). A fake clock throughout."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from shared.domain.plan import Plan, parse_rollout
from shared.domain.steering import GO, HOLD, STOP, Caller, Progress, Steering, admission_limit, advance, current_step, gate
from shared.foundation.errors import ErrorInfo

NOW = datetime(2026, 12, 7, 21, 0, tzinfo=UTC)  # a Monday, 22:00 in Berlin
ROLLOUT = parse_rollout(
    {
        "steps": [
            {"upgrade": {"targets": 50}},
            {"pause": {}},
            {"upgrade": {"percent": 10}},
            {"pause": {"duration": "PT24H"}},
            {"upgrade": {"percent": 50}},
        ],
        "maxFailedPercent": 2,
    }
)


def progress(**figures) -> Progress:
    figures.setdefault("slots", figures.get("admitted", 0))
    return Progress(**figures)


def test_a_run_without_a_plan_goes_and_never_advances():
    steering = Steering()
    assert gate(steering, None, NOW).verdict == GO and not gate(steering, None, NOW).admitted_only
    assert advance(steering, None, progress(targets=10, decided=10, admitted=10), NOW).steering == steering
    assert admission_limit(steering, None, targets=10, discovering=True) is None


def test_cancelled_or_failed_for_good_stops_and_a_discovery_error_does_not():
    assert gate(Steering(cancelled_at="2026-12-07T21:00:00Z", cancelled_by=Caller(None, "op")), ROLLOUT, NOW).verdict == STOP
    assert gate(Steering(error=ErrorInfo("missingPermissions", "...")), ROLLOUT, NOW).verdict == STOP
    assert gate(Steering(error=ErrorInfo("discoveryIncomplete", "...")), None, NOW).verdict == GO


def test_steps_in_order_with_exact_figures():
    s = Steering()
    assert gate(s, ROLLOUT, NOW).admitted_only
    assert admission_limit(s, ROLLOUT, targets=400, discovering=True) == 50
    # 50 admitted, 49 decided: the first step is not done
    assert advance(s, ROLLOUT, progress(targets=400, decided=49, admitted=50), NOW).steering == s
    # every admitted one decided (1 failed: 2 % of 50 is the budget, not over it): pause for an operator
    moved = advance(s, ROLLOUT, progress(targets=400, decided=50, failed=1, admitted=50), NOW)
    s = moved.steering
    assert s.step == 2 and s.pause == {"reason": "step", "step": 1, "decided": 50, "failed": 1, "at": "2026-12-07T21:00:00.000Z"}
    assert current_step(s) == 1
    assert [name for name, _ in moved.notes] == ["stepDone", "paused"] and not moved.release
    assert gate(s, ROLLOUT, NOW).verdict == HOLD and gate(s, ROLLOUT, NOW).reason == "paused"
    # an operator resumes: the percent step waits for discovery, then admits 10 % of every target
    s = replace(s, pause=None)  # resumed: the pause step is behind it
    assert admission_limit(s, ROLLOUT, targets=400, discovering=True) == 0
    assert advance(s, ROLLOUT, progress(targets=400, decided=50, failed=1, admitted=50, discovering=True), NOW).steering == s
    assert not advance(s, ROLLOUT, progress(targets=400, decided=50, failed=1, admitted=50, discovering=True), NOW).release
    go_on = advance(s, ROLLOUT, progress(targets=1000, decided=50, failed=1, admitted=50), NOW)
    assert go_on.release and go_on.steering == s  # 100 of 1000 admitted by the release
    assert admission_limit(s, ROLLOUT, targets=1000, discovering=False) == 100
    # step 2 done (2 of its 50 failed: 4 % > 2 %): paused, stepFailed, with the step's own figures
    failed = advance(s, ROLLOUT, progress(targets=1000, decided=100, failed=3, admitted=100), NOW).steering
    assert failed.pause["reason"] == "stepFailed" and (failed.pause["decided"], failed.pause["failed"]) == (50, 2)
    assert failed.step == 3 and failed.base == (100, 3)
    assert failed.results[-1] == {"step": 2, "decided": 50, "failed": 2, "at": "2026-12-07T21:00:00.000Z"}


def test_a_bake_waits_then_goes_on_and_the_plan_ends_with_everything_released():
    s = Steering(step=2, base=(50, 0), results=({"step": 0, "decided": 50, "failed": 0, "at": "x"},))
    baking = advance(s, ROLLOUT, progress(targets=1000, decided=100, admitted=100), NOW)
    s = baking.steering
    assert s.step == 4 and s.wait == {"reason": "bake", "step": 3, "resumesAt": "2026-12-08T21:00:00.000Z"}
    assert current_step(s) == 3
    assert baking.wake_at == NOW + timedelta(hours=24) and not baking.release
    held = gate(s, ROLLOUT, NOW)
    assert (held.verdict, held.reason, held.resumes_at) == (HOLD, "bake", NOW + timedelta(hours=24))
    # nothing moves during the bake
    assert advance(s, ROLLOUT, progress(targets=1000, decided=100, admitted=100), NOW + timedelta(hours=23)).steering == s
    after = advance(s, ROLLOUT, progress(targets=1000, decided=100, admitted=100), NOW + timedelta(hours=24))
    assert after.steering.wait is None and after.steering.step == 4 and after.release
    assert admission_limit(after.steering, ROLLOUT, targets=1000, discovering=False) == 500
    done = advance(after.steering, ROLLOUT, progress(targets=1000, decided=500, admitted=500), NOW + timedelta(hours=25))
    assert done.steering.step == 5 and done.release and done.notes[-1][0] == "planDone"
    assert not gate(done.steering, ROLLOUT, NOW).admitted_only
    assert admission_limit(done.steering, ROLLOUT, targets=1000, discovering=False) is None
    # through the plan, nothing more happens
    assert advance(done.steering, ROLLOUT, progress(targets=1000, decided=900, admitted=500), NOW) == type(done)(done.steering)


def test_a_step_is_not_done_while_admissions_are_being_recorded_or_discovery_may_add_more():
    plan = parse_rollout({"steps": [{"upgrade": {"targets": 50}}, {"pause": {}}]})
    s = Steering()
    # 50 slots taken, 48 rows recorded and decided: two more are on their way
    assert advance(s, plan, Progress(targets=60, decided=48, admitted=48, slots=50), NOW).steering == s
    # 30 found so far, all decided, discovery going on: more may come
    assert advance(s, plan, progress(targets=30, decided=30, admitted=30, discovering=True), NOW).steering == s
    # discovery over with only 30 targets: the step is done
    assert advance(s, plan, progress(targets=30, decided=30, admitted=30), NOW).steering.pause["reason"] == "step"


def test_held_targets_are_admitted_when_a_step_has_room():
    plan = parse_rollout({"steps": [{"upgrade": {"targets": 50}}, {"upgrade": {"targets": 80}}]})
    moved = advance(Steering(), plan, progress(targets=200, decided=50, admitted=50), NOW)
    assert moved.steering.step == 1 and moved.release
    # a held target recorded after the release read its rows: the next look admits it too
    assert advance(moved.steering, plan, progress(targets=200, decided=60, admitted=79), NOW).release
    assert not advance(moved.steering, plan, progress(targets=200, decided=60, admitted=80), NOW).release


def test_a_canary_is_the_one_step_plan_with_its_own_reasons():
    passes = Plan.canary(5)
    s = advance(Steering(), passes, progress(targets=24, decided=5, admitted=5), NOW)
    assert s.steering.step == 1 and s.release and [n for n, _ in s.notes] == ["stepDone", "planDone"]
    asked = Plan.canary(4, pause=True)
    paused = advance(Steering(), asked, progress(targets=12, decided=4, admitted=4), NOW).steering
    assert paused.pause["reason"] == "canaryPassed" and paused.step == 2
    failing = Plan.canary(5, 20, pause=True)
    failed = advance(Steering(), failing, progress(targets=10, decided=5, failed=2, admitted=5), NOW).steering
    # the failure's pause stands for the canary's own: resuming it goes on with every target
    assert failed.pause["reason"] == "canaryFailed" and failed.step == 2


def test_a_window_holds_outside_its_hours_and_says_when_it_opens():
    plan = parse_rollout(
        {
            "steps": [{"upgrade": {"targets": 5}}],
            "window": {"timeZone": "Europe/Berlin", "days": ["Mon"], "start": "20:00", "end": "23:00"},
        }
    )
    assert gate(Steering(), plan, NOW).verdict == GO  # Monday 22:00 in Berlin
    closed = gate(Steering(), plan, NOW + timedelta(hours=1))
    assert (closed.verdict, closed.reason, closed.resumes_at) == (HOLD, "window", datetime(2026, 12, 14, 19, 0, tzinfo=UTC))
    # a pause for an operator comes first
    assert gate(Steering(pause={"reason": "step"}), plan, NOW + timedelta(hours=1)).reason == "paused"


def test_waiting_for_the_catalog_holds_and_advance_leaves_it_alone():
    s = Steering(wait={"reason": "catalog", "resumesAt": "2026-12-07T21:00:05.000Z"})
    assert gate(s, ROLLOUT, NOW).reason == "catalog"
    assert advance(s, ROLLOUT, progress(), NOW + timedelta(minutes=1)).steering == s
