"""Waiting for a version the catalog does not list yet. Graph's catalog list can lag a publish by a
day or two, and a version may wait for an admin's approval: a run asked for such a version waits
(state `waiting`, reason `catalog`) and looks again, first within seconds, then less and less
often, for up to CATALOG_WAIT; then it fails `versionNotPublished`. Each look is a start step of
its own, queued with a delay, so that waiting holds no invocation and survives restarts."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

from shared.domain.app import VersionNotListed
from shared.domain.messages import StartRun, Step
from shared.domain.runs import RunRecord
from shared.domain.steering import iso, next_catalog_check, parse_iso
from shared.foundation.durations import format_duration
from shared.foundation.errors import ErrorInfo
from shared.foundation.telemetry import event
from shared.services import Services
from shared.steering.stopping import fail_run
from shared.steps.redelivery import StepOutput


def looks(step: Step) -> int:
    """How many looks at the catalog came before this start step ("start", "start-1", ...)."""
    _, _, n = step.step_id.partition("-")
    return int(n) if n.isdigit() else 0


def wait_for_catalog(
    services: Services, run: RunRecord, step: Step, missing: VersionNotListed, take_slot: Callable[[str], str | None]
) -> StepOutput:
    """`take_slot(app_id)` makes the run the app's running run, or names the run that is."""
    now = services.now()
    waited = now - parse_iso(run.created_at)
    delay = next_catalog_check(looks(step), waited, services.settings.catalog_wait)
    if delay is None:
        message = f"{missing.info.message} The run waited {format_duration(waited)} (CATALOG_WAIT) for it."
        fail_run(services, run.run_id, ErrorInfo("versionNotPublished", message))
        return StepOutput()
    following = StartRun(run_id=run.run_id, step_id=f"start-{looks(step) + 1}")
    resumes = now + delay
    wait = {"reason": "catalog", "resumesAt": iso(resumes), "version": missing.version, "stepId": following.step_id}
    services.runs.change_steering(run.run_id, lambda s: None if s.stopped else replace(s, wait=wait))
    if looks(step) == 0:
        blocker = None if run.dry_run else take_slot(missing.app_id)  # a waiting run is the app's running run
        if blocker:
            message = f"Run {blocker} is upgrading this app now; its status shows when it is done."
            fail_run(services, run.run_id, ErrorInfo("runInProgress", message))
            return StepOutput()
        if not run.explicit and not run.dry_run:  # the catalog watcher starts no second run when the version shows
            services.apps.advance(missing.app_id, missing.version, run.run_id)
        event(
            "runWaiting",
            "Run %s waits for version %s of app %s to be published in the catalog",
            run.run_id,
            missing.version,
            missing.app_id,
            runId=run.run_id,
            appId=missing.app_id,
            version=missing.version,
            reason="catalog",
            resumesAt=iso(resumes),
        )
    return StepOutput(children=[(following, math.ceil(delay.total_seconds()))])
