"""The run keeper, a timer: every few minutes it looks at every run not over yet.

A run that waits for a time already past (its wake message was lost) is looked at again; a run
with a plan is moved on if its counters say so (a safety net for a move no batch triggered); a run
stopping (cancelling, failing) with nothing recorded for a while gets its sweep again; a
run paused for an operator longer than PAUSED_ALERT_AFTER, and one that recorded nothing for
STALLED_AFTER while discovering or upgrading, are reported (`runPausedTooLong`, `runStalled`:
the alerts watch for them)."""

from __future__ import annotations

import logging
from datetime import timedelta

from shared.domain.messages import AdvanceRun
from shared.domain.steering import parse_iso
from shared.foundation.telemetry import event
from shared.services import Services
from shared.steering.progress import advance_run
from shared.steering.stopping import stop

STALLED_AFTER = timedelta(minutes=30)
SWEEP_AGAIN_AFTER = timedelta(minutes=10)
OVERDUE = timedelta(minutes=2)  # a wake this late was lost


def keep_runs(services: Services) -> int:
    """Looks at every run not over yet; returns how many."""
    now = services.now()
    going = services.runs.going()
    for status in going:
        run_id, state = status["runId"], status["state"]
        waiting = status.get("waiting") or {}
        if state == "waiting" and waiting.get("resumesAt") and parse_iso(waiting["resumesAt"]) < now - OVERDUE:
            services.dispatcher.send_steps([(AdvanceRun(run_id=run_id).encode(), 0)])
        elif (status.get("rollout") or status.get("canary")) and state in ("discovering", "upgrading"):
            advance_run(services, run_id)
        elif state in ("cancelling", "failing") and now - parse_iso(status["updatedAt"]) > SWEEP_AGAIN_AFTER:
            stop(services, run_id)  # its sweeps gave up while a batch held targets: look again
        pause = status.get("pause")
        app_id = status.get("teamsAppId")
        if state == "paused" and pause and now - parse_iso(pause["at"]) > services.settings.paused_alert_after:
            since = pause["at"]
            event(
                "runPausedTooLong",
                "Run %s of app %s waits for an operator: paused (%s) since %s",
                run_id,
                app_id,
                pause["reason"],
                since,
                level=logging.WARNING,
                runId=run_id,
                appId=app_id,
                state=state,
                reason=pause["reason"],
                pausedSince=since,
            )
        if state in ("discovering", "upgrading") and now - parse_iso(status["updatedAt"]) > STALLED_AFTER:
            since = status["updatedAt"]
            event(
                "runStalled",
                "Run %s of app %s is %s with nothing recorded since %s",
                run_id,
                app_id,
                state,
                since,
                level=logging.WARNING,
                runId=run_id,
                appId=app_id,
                state=state,
                lastChange=since,
            )
    return len(going)
