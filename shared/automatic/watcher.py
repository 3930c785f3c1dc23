"""The catalog watcher: Graph sends no notification when an app version is published (or approved
after review), so a timer reads the catalog and starts a run when a watched app has a newer
published version than the one last seen, the same way POST /api/publish does (a run record and a
start message).

Never two runs for one app and version: the run id is derived from (app, version), so concurrent
or repeated checks create the same run once. First sight of an app only records its version. While
another run of the app is going (a run published with chat ids that waited for this very version, a
rollout paused for days), the new version stays unseen and its run starts at the first check after
that run ends: started now, it would fail `runInProgress` at once.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from azure.data.tables import TableTransactionError

from shared.domain.app import choose_target
from shared.domain.messages import StartRun
from shared.domain.runs import RunSpec
from shared.domain.steering import Caller
from shared.domain.versions import version_key
from shared.foundation.errors import RunFailure
from shared.foundation.telemetry import event
from shared.graph.catalog import APP_CATALOG_BUCKET, find_app
from shared.runs.launch import launch, log_queued, with_default_plan
from shared.services import Services
from shared.stores.apps import utcnow

RUN_NAMESPACE = uuid.UUID("8a3c1f52-6a4e-4d5b-9a0c-2f7b6e1d9c44")
STALE_QUEUED_RUN = timedelta(minutes=1)  # a run created but not started by then lost its start message
log = logging.getLogger(f"upgrader.{__name__}")


def run_id_for(app_id: str, version: str) -> str:
    return uuid.uuid5(RUN_NAMESPACE, f"{app_id.lower()}@{version}").hex


def org_app_ids(services: Services) -> list[str]:
    return [app["id"] for app in _org_apps(services, expand=False)]


def _org_apps(services: Services, *, expand: bool) -> list[dict]:
    params = {"$filter": "distributionMethod eq 'organization'"}
    if expand:
        params["$expand"] = "appDefinitions"
    apps: list[dict] = []
    for page in services.graph.pages("/appCatalogs/teamsApps", params=params, bucket=APP_CATALOG_BUCKET):
        apps.extend(a for a in page if a.get("id"))
    return apps


def watched_apps(services: Services) -> list[dict]:
    """The catalog entries (with definitions) of the watched apps."""
    settings = services.settings
    apps: dict[str, dict] = {}
    if settings.watch_org_apps:
        apps.update((a["id"], a) for a in _org_apps(services, expand=True))
    for app_id in settings.watched_app_ids:
        if app_id in apps:
            continue
        try:
            apps[app_id] = find_app(services.graph, teams_app_id=app_id)
        except RunFailure as failure:
            event("watcher", "Watched app %s: %s", app_id, failure.info.message, appId=app_id, level=logging.WARNING)
    return list(apps.values())


def check_catalog(services: Services) -> int:
    """One look at the catalog: starts a run for each watched app with a newer published version.

    Returns how many runs it started. One app's trouble is logged and does not keep the others
    from being checked.
    """
    if not services.settings.watching:
        log.info("No app is watched (set WATCHED_APP_IDS or WATCH_ORG_APPS=true)")
        return 0
    started = 0
    for app in watched_apps(services):
        try:
            target = choose_target(app, None)
        except RunFailure:
            continue  # nothing published yet
        try:
            started += _check_app(services, target)
        except Exception as exc:
            event("watcher", "Checking app %s failed: %s", app.get("id"), exc, level=logging.ERROR, appId=app.get("id"))
    return started


def _check_app(services: Services, target) -> bool:
    apps, runs = services.apps, services.runs
    app_id = target.teams_app_id
    seen = apps.seen(app_id)
    if seen is None:
        if apps.first_sight(app_id, target.version, target.display_name):
            event(
                "watcher",
                "Watching %s: first seen at version %s",
                target.display_name,
                target.version,
                appId=app_id,
                version=target.version,
            )
        return False
    if version_key(target.version) <= version_key(seen.version):
        return False
    run_id = run_id_for(app_id, target.version)
    going = apps.running_run(app_id)
    if going is not None and going != run_id and services.runs.is_going(going):
        event(
            "watcher",
            "%s %s was published; run %s of this app is going, so its run starts once that one ends",
            target.display_name,
            target.version,
            going,
            appId=app_id,
            version=target.version,
            runId=going,
        )
        return False
    scopes = services.settings.upgrade_scopes
    spec = RunSpec(
        run_id=run_id,
        teams_app_id=app_id,
        external_id=None,
        version=target.version,
        dry_run=False,
        scopes=scopes,
        trigger="catalogWatcher",
        started_by=Caller(None, "catalogWatcher"),
    )
    message = f": {target.display_name} {target.version} was published (last seen {seen.version})"
    try:
        launch(services, spec, note=message)
        send = True
    except TableTransactionError as exc:
        if exc.error_code != "EntityAlreadyExists":
            raise
        # created by an earlier or concurrent check: send its start again only if it was lost
        status = runs.status(run_id)
        send = status is not None and status["state"] == "queued" and _older_than(status["createdAt"], STALE_QUEUED_RUN)
        if send:
            services.dispatcher.send_steps([(StartRun(run_id=run_id).encode(), 0)])
            log_queued(with_default_plan(services, spec), message + " (its start sent again)")
    # only now: had the start message been lost, the next check would find the version unseen and send it
    apps.advance(app_id, target.version, run_id, etag=seen.etag)
    return send


def _older_than(iso: str, age: timedelta) -> bool:
    return utcnow() - datetime.fromisoformat(iso.replace("Z", "+00:00")) > age
