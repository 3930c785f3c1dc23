"""POST /api/publish: starts a run. It makes no Graph call and writes one queue message, whatever
the size of the run: the start step does the rest."""

from __future__ import annotations

import uuid
from urllib.parse import urljoin

import azure.functions as func
from azure.core.exceptions import AzureError

from shared.domain.runs import RunSpec
from shared.foundation.errors import RequestError
from shared.http.auth import RUN, signed_in
from shared.http.bodies import MAX_BODY_BYTES, check_enabled, parse_publish
from shared.http.responses import json_response, request_error, storage_error
from shared.runs.launch import launch
from shared.services import Services


def _declared_length(req: func.HttpRequest) -> int:
    try:
        return int(req.headers.get("Content-Length") or 0)
    except ValueError:
        return 0


def publish(req: func.HttpRequest, control: func.Out, services: Services | None = None) -> func.HttpResponse:
    try:
        services, caller = signed_in(req, services, RUN)
        if _declared_length(req) > MAX_BODY_BYTES:
            raise RequestError("payloadTooLarge", f"The body is larger than {MAX_BODY_BYTES} bytes.", status=413)
        request = parse_publish(req.get_body())
        check_enabled(request, services.settings.upgrade_scopes)
    except RequestError as exc:
        return request_error(exc)
    spec = RunSpec(
        run_id=uuid.uuid4().hex,
        teams_app_id=request.teams_app_id,
        external_id=request.external_id,
        version=request.version,
        dry_run=request.dry_run,
        scopes=request.run_scopes or services.settings.upgrade_scopes,
        targets=request.targets,
        trigger="api",
        started_by=caller,
        plan=request.plan,
        group_id=request.group_id,
    )
    try:
        launch(services, spec, send=lambda start: control.set([start]))
    except AzureError as exc:
        return storage_error(f"Run {spec.run_id} could not be recorded", exc)
    status_url = urljoin(req.url.split("?", 1)[0], f"runs/{spec.run_id}")
    return json_response(202, {"runId": spec.run_id, "statusUrl": status_url}, headers={"Location": status_url})
