"""The start step: resolve the app and its newest published version, take the app's one running
slot, choose how each scope finds its targets (the given ids, the registry, or a scan), and emit
the steps that do it."""

from __future__ import annotations

from dataclasses import replace

from shared.domain.app import VersionNotListed
from shared.domain.messages import ListTeams, ListUsers, LoadTargets, Step
from shared.domain.runs import EXPLICIT, RunRecord
from shared.foundation.errors import ErrorInfo, GraphError, GraphRetryable, MissingPermissions, RunFailure, missing_permissions
from shared.foundation.telemetry import event
from shared.graph.catalog import resolve_target
from shared.graph.permissions import missing_upgrade_roles
from shared.services import Services
from shared.steering.stopping import fail_for_permissions, fail_run
from shared.steps.catalog_wait import wait_for_catalog
from shared.steps.layout import lay_out_planned
from shared.steps.redelivery import Delivery, StepOutput
from shared.stores.apps import utcnow

# batches an explicit run's start step processes itself, while it lays out the rest: enough GETs
# to keep the bucket busy until the first queued batches are picked up (a queue poll can take a second)
INLINE_BATCHES = 4
# a scope's registry is complete once its seeding run is past discovery (chats are recorded as
# they are listed), or through (teams and users are recorded as each is checked)
SEEDED_STATES = {"chat": ("upgrading", "completed"), "team": ("completed",), "personal": ("completed",)}


def start(services: Services, run: RunRecord, step: Step, delivery: Delivery) -> StepOutput:
    try:
        target = resolve_target(
            services.graph, teams_app_id=run.teams_app_id, external_id=run.external_id, version=run.requested_version
        )
    except VersionNotListed as missing:
        return wait_for_catalog(services, run, step, missing, lambda app_id: _take_slot(services, app_id, run.run_id))
    except RunFailure as failure:
        fail_run(services, run.run_id, failure.info)
        return StepOutput()
    except GraphRetryable:
        raise  # the host retries the start step
    except GraphError as exc:
        missing = missing_permissions(exc, "reading the app catalog")
        if missing is not None:
            fail_for_permissions(services, run.run_id, missing.message)
            return StepOutput()
        message = f"Reading the app catalog failed: {exc.status} {exc.code}: {exc.message}"
        fail_run(services, run.run_id, ErrorInfo("catalogError", message))
        return StepOutput()
    if not run.dry_run:
        lacking = missing_upgrade_roles(services.graph.roles(), run.scopes)
        if lacking:  # granted since this token was issued? look once at a new one
            services.graph.renew_token()
            lacking = missing_upgrade_roles(services.graph.roles(), run.scopes)
        if lacking:
            needs = {f"upgrading {scope} installations": list(roles) for scope, roles in lacking.items()}
            fail_for_permissions(services, run.run_id, MissingPermissions(needs).message)
            return StepOutput()
    app_id = target.teams_app_id
    if not run.dry_run:
        blocker = _take_slot(services, app_id, run.run_id)
        if blocker:
            message = f"Run {blocker} is upgrading this app now; its status shows when it is done."
            fail_run(services, run.run_id, ErrorInfo("runInProgress", message))
            return StepOutput()
    discovery = discovery_modes(services, run, app_id)
    scanned = tuple(s for s in run.scopes if discovery[s] == "scan")
    seeding = scanned if discovery_group(services, run) is None else ()  # a full scan seeds the registry
    by_manifest = run.created_at if run.teams_app_id is None else None  # indexed under its app only now
    services.runs.set_target(run.run_id, target, discovery, seeding, created_at=by_manifest)
    if run.steering.wait is not None:  # the version it waited for is in the catalog now
        services.runs.change_steering(
            run.run_id, lambda s: replace(s, wait=None) if s.wait and s.wait["reason"] == "catalog" else None
        )
    if not run.explicit and not run.dry_run:  # so that the catalog watcher does not start it again
        services.apps.advance(app_id, target.version, run.run_id)
    event(
        "runStarted",
        "Run %s targets %s version %s in %s",
        run.run_id,
        target.display_name,
        target.version,
        ", ".join(run.scopes),
        runId=run.run_id,
        appId=app_id,
        targetVersion=target.version,
        dryRun=run.dry_run,
        scopes=",".join(run.scopes),
        discoveryMode=",".join(f"{s}:{m}" for s, m in discovery.items()),
    )
    if seeding:
        services.apps.begin_seed(app_id, run.run_id, seeding)
    if run.explicit:  # laid out and begun right here: the first GETs wait for no other step
        started = replace(run, target=target, discovery=discovery)
        targets = [t for key in run.input_keys for t in services.runs.load_input(run.run_id, key)]
        inline = INLINE_BATCHES if delivery.dequeue_count == 1 else 0  # a redelivery's rows exist: resend queued them
        lay_out_planned(services, started, step, targets, inline=inline, chain=delivery.chain(step))
        return StepOutput()
    return StepOutput(children=[(child, 0) for child in _first_steps(services, run, app_id, discovery)])


def _first_steps(services: Services, run: RunRecord, app_id: str, discovery: dict[str, str]) -> list[Step]:
    scanned = {s for s, mode in discovery.items() if mode == "scan"}
    grouped = discovery_group(services, run) is not None
    keys: list[str] = []
    from_registry = [t for s, mode in discovery.items() if mode == "registry" for t in services.registry.targets(app_id, s)]
    if from_registry:
        keys += services.runs.add_inputs(run.run_id, from_registry, prefix="r")
    steps: list[Step] = [LoadTargets(run_id=run.run_id, step_id=f"input-{i}", input_key=k) for i, k in enumerate(keys)]
    if scanned & {"chat", "personal"} or ("team" in scanned and grouped):
        steps.append(ListUsers(run_id=run.run_id, step_id="users-0", page=0))
    if "team" in scanned and not grouped:
        steps.append(ListTeams(run_id=run.run_id, step_id="teams-0", page=0))
    return steps


def _take_slot(services: Services, app_id: str, run_id: str) -> str | None:
    """Makes the run the app's running run, unless another still runs; returns that other run's id."""
    return services.apps.begin_run(app_id, run_id, services.runs.is_going)


def discovery_group(services: Services, run: RunRecord) -> str | None:
    """The group whose members discovery looks among: the run's own (a pilot ring), or DISCOVERY_GROUP_ID."""
    return run.group_id or services.settings.discovery_group_id


def discovery_modes(services: Services, run: RunRecord, app_id: str) -> dict[str, str]:
    """How each scope of the run finds its targets: explicit, registry or scan (a ring always scans
    its group: the registry knows installations, not who they belong to)."""
    if run.explicit:
        return dict.fromkeys(run.scopes, EXPLICIT)
    if run.group_id is not None:
        return dict.fromkeys(run.scopes, "scan")
    mode = services.settings.discovery_mode
    if mode != "auto":
        return dict.fromkeys(run.scopes, mode)
    return {s: "registry" if registry_ready(services, app_id, s) else "scan" for s in run.scopes}


def registry_ready(services: Services, app_id: str, scope: str) -> bool:
    """A scope of the registry is complete when a full scan seeded it after the subscription began
    covering the scope, and nothing since (an unreadable installation id, a lost subscription) put
    it in doubt."""
    subscription = services.apps.subscription(app_id)
    seed = services.apps.registry(app_id).seed(scope)
    if subscription is None or subscription.expires_at <= utcnow() or scope not in subscription.scopes:
        return False
    if not seed.run_id or not seed.started_at or seed.started_at < subscription.started_at:
        return False
    if seed.invalidated_at and seed.invalidated_at >= seed.started_at:
        return False
    status = services.runs.status(seed.run_id)
    return status is not None and status["state"] in SEEDED_STATES[scope] and status["error"] is None
