"""The run routes: GET /api/runs (history), GET /api/runs/{runId} (status), and the operator's
POST /api/runs/{runId}/cancel, /resume and /retry."""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urlencode, urljoin

import azure.functions as func

from shared.domain.messages import RUN_ID
from shared.domain.runs import STATES
from shared.foundation.errors import RequestError
from shared.foundation.settings import GUID
from shared.http.auth import READ, RUN, signed_in
from shared.http.responses import answer, json_response
from shared.steering import commands
from shared.stores.history import HISTORY_KEY

HISTORY_PARAMETERS = ("appId", "state", "top", "continuationToken", "code")  # code: the function key
DEFAULT_TOP, MAX_TOP = 20, 100
TOP = re.compile(r"^[0-9]{1,3}$")


def _run_id(req: func.HttpRequest) -> str:
    run_id = (req.route_params.get("runId") or "").lower()
    if not RUN_ID.match(run_id):
        raise RequestError("runNotFound", "No run with this id (run ids are 32 hex digits).", status=404)
    return run_id


def _url(req: func.HttpRequest, path: str) -> str:
    return urljoin(req.url.split("?", 1)[0], path)


def run_status(req: func.HttpRequest, services=None) -> func.HttpResponse:
    def work() -> func.HttpResponse:
        runs = signed_in(req, services, READ)[0].runs
        run_id = _run_id(req)
        status = runs.status(run_id)
        if status is None:
            raise RequestError("runNotFound", f"No run with id {run_id}.", status=404)
        return json_response(200, status)

    return answer("The status of the run could not be read", work)


def _act(req: func.HttpRequest, services, action: Callable) -> dict | str:
    """An operator action on the run the route names, by a caller allowed to run upgrades."""
    services, caller = signed_in(req, services, RUN)
    return action(services, _run_id(req), caller)


def cancel_run(req: func.HttpRequest, services=None) -> func.HttpResponse:
    return answer("The run could not be cancelled", lambda: json_response(202, _act(req, services, commands.cancel)))


def resume_run(req: func.HttpRequest, services=None) -> func.HttpResponse:
    return answer("The run could not be resumed", lambda: json_response(202, _act(req, services, commands.resume)))


def retry_run(req: func.HttpRequest, services=None) -> func.HttpResponse:
    def work() -> func.HttpResponse:
        run_id = _act(req, services, commands.retry)
        # .../runs/{old}/retry -> .../runs/{new}
        status_url = _url(req, f"../{run_id}")
        return json_response(202, {"runId": run_id, "statusUrl": status_url}, headers={"Location": status_url})

    return answer("The retry could not be recorded", work)


def list_runs(req: func.HttpRequest, services=None) -> func.HttpResponse:
    def work() -> func.HttpResponse:
        runs = signed_in(req, services, READ)[0].runs
        query = _history_query(req.params)
        documents, after = runs.history(
            app_id=query.get("appId"), state=query.get("state"), after=query.get("continuationToken"), limit=query["top"]
        )
        next_link = None
        if after:
            kept = {k: v for k, v in req.params.items() if k != "continuationToken"}
            next_link = f"{req.url.split('?', 1)[0]}?{urlencode({**kept, 'continuationToken': after})}"
        return json_response(200, {"value": documents, "nextLink": next_link})

    return answer("The run history could not be read", work)


def _history_query(params) -> dict:
    unknown = sorted(set(params) - set(HISTORY_PARAMETERS))
    if unknown:
        allowed = ", ".join(HISTORY_PARAMETERS[:-1])
        raise RequestError("unknownParameter", f"Unknown query parameter(s): {', '.join(unknown)}. Allowed: {allowed}.")
    query: dict = {"top": DEFAULT_TOP}
    app_id = params.get("appId")
    if app_id is not None:
        if not GUID.match(app_id):
            raise RequestError("invalidAppId", "appId must be a GUID, the app's id in the tenant app catalog.")
        query["appId"] = app_id.lower()
    state = params.get("state")
    if state is not None:
        if state not in STATES:
            raise RequestError("invalidState", f"state must be one of {', '.join(STATES)}.")
        query["state"] = state
    top = params.get("top")
    if top is not None:
        if not TOP.match(top) or not 1 <= int(top) <= MAX_TOP:
            raise RequestError("invalidTop", f"top must be an integer from 1 to {MAX_TOP}.")
        query["top"] = int(top)
    token = params.get("continuationToken")
    if token is not None:
        if not HISTORY_KEY.match(token):
            raise RequestError("invalidContinuationToken", "continuationToken must be one a nextLink gave.")
        query["continuationToken"] = token
    return query
