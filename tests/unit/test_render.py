"""What the CLI prints and answers with: where a run stands in its plan, when --watch stops, the
summary's steering lines and the exit codes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from upgrader_cli.render import exit_code, plan_line, settled, summary, waits_long

PLAN = {
    "steps": [{"upgrade": {"targets": 50}}, {"pause": {}}, {"upgrade": {"percent": 10}}, {"pause": {"duration": "PT24H"}}],
    "maxFailedPercent": 2.0,
    "window": {"timeZone": "Europe/Berlin", "days": ["Mon"], "start": "20:00", "end": "06:00"},
}
COUNTS = {"targets": 10, "upgraded": 4, "failed": 0, "pending": 6}


def status(state: str, **fields) -> dict:
    return {"runId": "r" * 32, "state": state, "counts": COUNTS, "rollout": {**PLAN, "step": 2}, **fields}


def test_the_plan_line_names_the_step_and_what_holds_it():
    assert plan_line(status("upgrading")) == "rollout: step 3 of 4 (upgrade 10%): upgrading"
    paused = status("paused", pause={"reason": "step", "step": 1, "decided": 50, "failed": 0, "at": "x"})
    assert plan_line(paused) == "rollout: step 2 of 4 (pause for an operator): paused"
    baking = status("waiting", waiting={"reason": "bake", "resumesAt": "2026-12-08T21:00:00.000Z"}, rollout={**PLAN, "step": 3})
    assert plan_line(baking) == "rollout: step 4 of 4 (bake PT24H): waiting (bake) until 2026-12-08T21:00:00.000Z"
    assert plan_line(status("completed", rollout={**PLAN, "step": 4})) == "rollout: through all 4 steps"
    assert plan_line({"state": "completed", "rollout": None}) is None


def test_watch_follows_short_waits_and_stops_at_long_ones_and_pauses():
    now = datetime(2026, 12, 7, 21, 0, tzinfo=UTC)
    soon = (now + timedelta(seconds=30)).isoformat().replace("+00:00", "Z")
    later = (now + timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    assert not waits_long(status("waiting", waiting={"reason": "window", "resumesAt": soon}), now)
    assert waits_long(status("waiting", waiting={"reason": "window", "resumesAt": later}), now)
    assert waits_long(status("waiting", waiting={"reason": "catalog", "resumesAt": None}), now)
    assert settled(status("paused", pause={"reason": "step"})) and not settled(status("upgrading"))
    assert settled({"state": "completed", "counts": {"pending": 0}}) and not settled(
        {"state": "failing", "counts": {"pending": 3}}
    )


def test_exit_codes():
    assert exit_code({"state": "completed", "counts": {"failed": 0}}) == 0
    assert exit_code({"state": "completed", "counts": {"failed": 2}}) == 1
    assert exit_code({"state": "failed", "counts": {}, "error": {"code": "appNotFound"}}) == 1
    assert exit_code({"state": "paused", "counts": {}}) == 3
    assert exit_code({"state": "cancelled", "counts": {}}) == 4
    assert exit_code({"state": "waiting", "counts": {}}) == 5
    for state in ("queued", "discovering", "upgrading"):  # status without --watch of a run going on
        assert exit_code({"state": state, "counts": {"failed": 1}}) == 6
    assert exit_code({"state": "failing", "counts": {}, "error": {"code": "missingPermissions"}}) == 1
    assert exit_code({"state": "cancelling", "counts": {}}) == 4


def test_the_summary_says_what_holds_the_run_and_the_command_to_go_on():
    text = summary(
        status(
            "paused",
            teamsAppId="app",
            targetVersion="1.4.0",
            startedBy={"name": "Ada"},
            trigger="api",
            groupId="g-1",
            pause={"reason": "stepFailed", "step": 0, "decided": 50, "failed": 3, "at": "x"},
        )
    )
    assert (
        "Rollout: step 1 of 4 (upgrade 50 targets): paused; at most 2% of a step may fail; window 20:00-06:00 Europe/Berlin (Mon)"
        in text
    )
    assert "Pilot ring: the members of group g-1" in text
    assert "Paused: too many targets of step 1 failed (3 of 50 failed)." in text
    assert f"teams-upgrader resume {'r' * 32}" in text
    waiting = summary(status("waiting", teamsAppId="app", waiting={"reason": "catalog", "resumesAt": "2026-12-07T21:05:00Z"}))
    assert "Waiting for the version to show in the app catalog until 2026-12-07T21:05:00Z; it goes on by itself." in waiting
