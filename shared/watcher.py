"""The catalog watcher: Graph sends no notification when an app version is published (or approved
after review), so a timer reads the catalog and starts a run when a watched app has a newer
published version than the one last seen.

Never two runs for one app and version: the run id is derived from (app, version), so concurrent
or repeated checks create the same run once. First sight of an app only records its version.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from azure.core.exceptions import ResourceExistsError

from shared.catalog import APP_CATALOG_BUCKET, choose_target, find_app
from shared.errors import RunFailure
from shared.messages import StartRun
from shared.runs import RunSpec
from shared.telemetry import event
from shared.tracking import utcnow
from shared.versions import version_key

RUN_NAMESPACE = uuid.UUID("8a3c1f52-6a4e-4d5b-9a0c-2f7b6e1d9c44")
STALE_QUEUED_RUN = timedelta(minutes=1)  # a run created but not started by then lost its start message
log = logging.getLogger(f"upgrader.{__name__}")


def run_id_for(app_id: str, version: str) -> str:
    return uuid.uuid5(RUN_NAMESPACE, f"{app_id.lower()}@{version}").hex


def watched_apps(services) -> list[dict]:
    """The catalog entries (with definitions) of the watched apps."""
    settings, graph = services.settings, services.graph
    apps: dict[str, dict] = {}
    if settings.watch_org_apps:
        for page in graph.pages(
            "/appCatalogs/teamsApps",
            params={"$filter": "distributionMethod eq 'organization'", "$expand": "appDefinitions"},
            bucket=APP_CATALOG_BUCKET,
        ):
            apps.update({a["id"]: a for a in page if a.get("id")})
    for app_id in settings.watched_app_ids:
        if app_id in apps:
            continue
        try:
            apps[app_id] = find_app(graph, teams_app_id=app_id)
        except RunFailure as failure:
            event("watcher", "Watched app %s: %s", app_id, failure.info.message, appId=app_id, level=logging.WARNING)
    return list(apps.values())


def check_catalog(services) -> list[str]:
    """One look at the catalog; returns the start messages of the runs to begin."""
    if not services.settings.watching:
        log.info("No app is watched (set WATCHED_APP_IDS or WATCH_ORG_APPS=true)")
        return []
    messages: list[str] = []
    for app in watched_apps(services):
        try:
            target = choose_target(app, None)
        except RunFailure:
            continue  # nothing published yet
        message = _check_app(services, target)
        if message:
            messages.append(message)
    return messages


def _check_app(services, target) -> str | None:
    tracking, runs = services.tracking, services.runs
    app_id = target.teams_app_id
    seen = tracking.seen(app_id)
    if seen is None:
        if tracking.first_sight(app_id, target.version, target.display_name):
            event(
                "watcher",
                "Watching %s: first seen at version %s",
                target.display_name,
                target.version,
                appId=app_id,
                version=target.version,
            )
        return None
    if version_key(target.version) <= version_key(seen.version):
        return None
    run_id = run_id_for(app_id, target.version)
    spec = RunSpec(run_id=run_id, teams_app_id=app_id, external_id=None, version=target.version, dry_run=False)
    try:
        runs.create_run(spec)
        send = True
    except ResourceExistsError:  # created by an earlier or concurrent check
        status = runs.status(run_id)
        send = status is not None and status["state"] == "queued" and _older_than(status["createdAt"], STALE_QUEUED_RUN)
    tracking.advance(app_id, target.version, run_id, etag=seen.etag)
    if not send:
        return None
    event(
        "runQueued",
        "%s %s was published (last seen %s): run %s",
        target.display_name,
        target.version,
        seen.version,
        run_id,
        runId=run_id,
        appId=app_id,
        version=target.version,
        trigger="catalogWatcher",
    )
    return StartRun(run_id=run_id).encode()


def _older_than(iso: str, age: timedelta) -> bool:
    from datetime import datetime

    return utcnow() - datetime.fromisoformat(iso.replace("Z", "+00:00")) > age
