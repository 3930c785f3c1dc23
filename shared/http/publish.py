"""POST /api/publish: starts a run. It makes no Graph call and writes one queue message, whatever
the size of the run: the start step does the rest."""

from __future__ import annotations

import uuid
from urllib.parse import urljoin

import azure.functions as func
from azure.core.exceptions import AzureError

from shared.domain.messages import StartRun
from shared.domain.runs import RunSpec
from shared.foundation.errors import RequestError
from shared.foundation.telemetry import event
from shared.http.auth import RUN, signed_in
from shared.http.bodies import MAX_BODY_BYTES, check_enabled, parse_publish
from shared.http.responses import json_response, request_error, storage_error


def _declared_length(req: func.HttpRequest) -> int:
    try:
        return int(req.headers.get("Content-Length") or 0)
    except ValueError:
        return 0


def publish(req: func.HttpRequest, control: func.Out, services=None) -> func.HttpResponse:
    try:
        services, caller = signed_in(req, services, RUN)
        if _declared_length(req) > MAX_BODY_BYTES:
            raise RequestError("payloadTooLarge", f"The body is larger than {MAX_BODY_BYTES} bytes.", status=413)
        request = parse_publish(req.get_body())
        check_enabled(request, services.settings.upgrade_scopes)
    except RequestError as exc:
        return request_error(exc)
    run_id = uuid.uuid4().hex
    spec = RunSpec(
        run_id=run_id,
        teams_app_id=request.teams_app_id,
        external_id=request.external_id,
        version=request.version,
        dry_run=request.dry_run,
        scopes=request.run_scopes or services.settings.upgrade_scopes,
        targets=request.targets,
        trigger="api",
        started_by=caller,
        canary=request.canary,
    )
    try:
        services.runs.create_run(spec)
    except AzureError as exc:
        return storage_error(f"Run {run_id} could not be recorded", exc)
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
        scopes=",".join(spec.scopes),
        targets=len(request.targets or ()),
        dryRun=request.dry_run,
        trigger="api",
        startedBy=spec.started_by.name,
        canary=request.canary.targets if request.canary else None,
    )
    return json_response(202, {"runId": run_id, "statusUrl": status_url}, headers={"Location": status_url})
