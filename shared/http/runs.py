"""GET /api/runs/{runId}: the run's status document."""

from __future__ import annotations

import azure.functions as func
from azure.core.exceptions import AzureError

from shared.domain.messages import RUN_ID
from shared.foundation.errors import ErrorInfo, RequestError
from shared.http.responses import error_response, json_response, services_or_error, storage_error


def run_status(req: func.HttpRequest, services=None) -> func.HttpResponse:
    run_id = (req.route_params.get("runId") or "").lower()
    if not RUN_ID.match(run_id):
        return error_response(404, ErrorInfo("runNotFound", "No run with this id (run ids are 32 hex digits)."))
    try:
        services = services_or_error(services)
        status = services.runs.status(run_id)
    except RequestError as exc:
        return error_response(exc.status, exc.info)
    except AzureError as exc:
        return storage_error(f"The status of run {run_id} could not be read", exc)
    if status is None:
        return error_response(404, ErrorInfo("runNotFound", f"No run with id {run_id}."))
    return json_response(200, status)
