"""Starting a run, whoever asks: POST /api/publish, a retry, the catalog watcher. The run is
recorded with its plan (the one asked for, or the deployment's ROLLOUT), its start step is
queued, and `runQueued` says who started what. No Graph call: the start step does the rest."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from shared.domain.messages import StartRun
from shared.domain.runs import RunSpec
from shared.foundation.telemetry import event
from shared.services import Services


def with_default_plan(services: Services, spec: RunSpec) -> RunSpec:
    """A run that asks for no plan follows the deployment's ROLLOUT (a dry run upgrades nothing: it has none)."""
    if spec.plan is not None or spec.dry_run or services.default_plan is None:
        return spec
    return replace(spec, plan=services.default_plan)


def launch(services: Services, spec: RunSpec, *, send: Callable[[str], None] | None = None, note: str = "") -> RunSpec:
    """Records the run and queues its start step (through `send`, an output binding, when given);
    returns the run as recorded. Raises the storage error when it could not be recorded. `note`
    ends the log line."""
    spec = with_default_plan(services, spec)
    services.runs.create_run(spec)
    start = StartRun(run_id=spec.run_id).encode()
    if send is not None:
        send(start)
    else:
        services.dispatcher.send_steps([(start, 0)])
    log_queued(spec, note)
    return spec


def log_queued(spec: RunSpec, message: str = "") -> None:
    plan = spec.plan
    event(
        "runQueued",
        "Run %s queued for app %s (%s)%s",
        spec.run_id,
        spec.teams_app_id or spec.external_id,
        spec.trigger,
        message,
        runId=spec.run_id,
        appId=spec.teams_app_id,
        externalId=spec.external_id,
        version=spec.version,
        scopes=",".join(spec.scopes),
        targets=len(spec.targets) if spec.targets is not None else None,
        dryRun=spec.dry_run,
        trigger=spec.trigger,
        startedBy=spec.started_by.name,
        retryOf=spec.retry_of,
        canary=plan.canary_dict()["targets"] if plan is not None and plan.is_canary else None,
        rolloutSteps=len(plan.steps) if plan is not None and not plan.is_canary else None,
        groupId=spec.group_id,
    )
