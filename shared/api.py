"""HTTP routes: POST /api/publish starts a run, GET /api/runs/{runId} reports it.

publish makes no Graph call and writes one queue message, whatever the size of the run: the
start step does the rest.
"""

from __future__ import annotations

import json
import logging
import uuid
from urllib.parse import urljoin

import azure.functions as func
from azure.core.exceptions import AzureError

from shared import services as services_module
from shared.errors import ErrorInfo, RequestError
from shared.messages import RUN_ID, StartRun
from shared.runs import RunSpec
from shared.settings import ConfigError
from shared.telemetry import event
from shared.tracking import AppState
from shared.validation import MAX_BODY_BYTES, parse_publish

log = logging.getLogger(f"upgrader.{__name__}")


def json_response(status: int, body: dict, headers: dict | None = None) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json", headers=headers)


def error_response(status: int, error: ErrorInfo) -> func.HttpResponse:
    return json_response(status, {"error": error.to_dict()})


def _declared_length(req: func.HttpRequest) -> int:
    try:
        return int(req.headers.get("Content-Length") or 0)
    except ValueError:
        return 0


def _services(services):
    """The process's services; a malformed setting becomes a RequestError naming it."""
    if services is not None:
        return services
    try:
        return services_module.get()
    except ConfigError as exc:
        log.error("Configuration error: %s", exc)
        raise RequestError("configurationError", str(exc), status=500) from None
    except AzureError as exc:  # building the services creates the tables
        log.error("Storage unavailable: %s", type(exc).__name__)
        raise RequestError("storageUnavailable", "Storage is unavailable; try again.", status=503) from None


def publish(req: func.HttpRequest, control: func.Out, services=None) -> func.HttpResponse:
    try:
        if _declared_length(req) > MAX_BODY_BYTES:
            raise RequestError("payloadTooLarge", f"The body is larger than {MAX_BODY_BYTES} bytes.", status=413)
        request = parse_publish(req.get_body())
        services = _services(services)
    except RequestError as exc:
        return error_response(exc.status, exc.info)
    run_id = uuid.uuid4().hex
    spec = RunSpec(
        run_id=run_id,
        teams_app_id=request.teams_app_id,
        external_id=request.external_id,
        version=request.version,
        dry_run=request.dry_run,
        chat_ids=request.chat_ids,
    )
    try:
        services.runs.create_run(spec)
    except AzureError as exc:
        log.error("Could not record run %s: %s", run_id, type(exc).__name__)
        return error_response(503, ErrorInfo("storageUnavailable", "The run could not be recorded; try again."))
    control.set([StartRun(run_id=run_id).encode()])
    status_url = urljoin(req.url.split("?", 1)[0], f"runs/{run_id}")
    event(
        "runQueued",
        "Run %s queued for app %s",
        run_id,
        request.teams_app_id or request.external_id,
        runId=run_id,
        appId=request.teams_app_id,
        externalId=request.external_id,
        chats=len(request.chat_ids or ()),
        dryRun=request.dry_run,
        trigger="api",
    )
    return json_response(202, {"runId": run_id, "statusUrl": status_url}, headers={"Location": status_url})


def run_status(req: func.HttpRequest, services=None) -> func.HttpResponse:
    run_id = (req.route_params.get("runId") or "").lower()
    if not RUN_ID.match(run_id):
        return error_response(404, ErrorInfo("runNotFound", "No run with this id (run ids are 32 hex digits)."))
    try:
        services = _services(services)
    except RequestError as exc:
        return error_response(exc.status, exc.info)
    try:
        status = services.runs.status(run_id)
    except AzureError as exc:
        log.error("Could not read run %s: %s", run_id, type(exc).__name__)
        return error_response(503, ErrorInfo("storageUnavailable", "The run status could not be read; try again."))
    if status is None:
        return error_response(404, ErrorInfo("runNotFound", f"No run with id {run_id}."))
    return json_response(200, status)


def apps_status(req: func.HttpRequest, services=None) -> func.HttpResponse:
    """GET /api/apps: what the automatic triggers know per app (versions, subscription, registry)."""
    try:
        services = _services(services)
        return json_response(200, {"apps": _apps(services)})
    except RequestError as exc:
        return error_response(exc.status, exc.info)
    except AzureError as exc:
        log.error("Could not read the apps: %s", type(exc).__name__)
        return error_response(503, ErrorInfo("storageUnavailable", "The app state could not be read; try again."))


def _apps(services) -> list[dict]:
    known = services.tracking.apps()
    for app_id in services.settings.watched_app_ids:
        known.setdefault(app_id, AppState())
    apps = []
    for app_id, state in sorted(known.items()):
        subscription, registry = state.subscription, state.registry
        apps.append(
            {
                "teamsAppId": app_id,
                "displayName": state.seen.get("displayName"),
                "seenVersion": state.seen.get("version"),
                "seenAt": _iso(state.seen.get("seenAt")),
                "lastRunId": state.seen.get("runId"),
                "subscription": None
                if subscription is None
                else {
                    "id": subscription.id,
                    "expiresAt": _iso(subscription.expires_at),
                    "startedAt": _iso(subscription.started_at),
                },
                "registry": {
                    "chats": services.registry.count(app_id),
                    "seedRunId": registry.seed_run_id,
                    "seedStartedAt": _iso(registry.seed_started_at),
                    "invalidatedAt": _iso(registry.invalidated_at),
                    "events": registry.events,
                    "undecodable": registry.undecodable,
                },
            }
        )
    return apps


def _iso(moment) -> str | None:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z") if moment else None
