"""What every HTTP route shares: JSON responses, the error body, and the process's services."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import azure.functions as func
from azure.core.exceptions import AzureError

from shared import bootstrap
from shared.foundation.errors import ErrorInfo, RequestError
from shared.foundation.settings import ConfigError

log = logging.getLogger(f"upgrader.{__name__}")


def json_response(status: int, body: dict, headers: dict | None = None) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json", headers=headers)


def error_response(status: int, error: ErrorInfo, headers: dict | None = None) -> func.HttpResponse:
    return json_response(status, {"error": error.to_dict()}, headers=headers or None)


def request_error(exc: RequestError) -> func.HttpResponse:
    return error_response(exc.status, exc.info, exc.headers)


def services_or_error(services):
    """The process's services; a malformed setting or unreachable storage becomes a RequestError."""
    if services is not None:
        return services
    try:
        return bootstrap.get()
    except ConfigError as exc:
        log.error("Configuration error: %s", exc)
        raise RequestError("configurationError", str(exc), status=500) from None
    except AzureError as exc:  # building the services creates the tables
        log.error("Storage unavailable: %s", type(exc).__name__)
        raise RequestError("storageUnavailable", "Storage is unavailable; try again.", status=503) from None


def answer(what: str, work: Callable[[], func.HttpResponse]) -> func.HttpResponse:
    """Runs a route's work: bad input, refusals and conflicts become their error, storage trouble a
    503 saying `what` could not be done."""
    try:
        return work()
    except RequestError as exc:
        return request_error(exc)
    except AzureError as exc:
        return storage_error(what, exc)


def storage_error(message: str, exc: AzureError) -> func.HttpResponse:
    """A 503 for storage that failed under a route; `message` says what could not be done."""
    log.error("%s (%s)", message, type(exc).__name__)
    return error_response(503, ErrorInfo("storageUnavailable", f"{message}; try again."))
