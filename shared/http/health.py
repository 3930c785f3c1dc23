"""GET /api/health: the platform's health check (and an availability test's target). Anonymous,
quick and free of detail: healthy when the settings load and storage answers."""

from __future__ import annotations

import azure.functions as func
from azure.core.exceptions import AzureError

from shared.foundation.errors import RequestError
from shared.foundation.storage import CONTROL_QUEUE
from shared.http.responses import json_response, request_error, services_or_error, storage_error


def health(req: func.HttpRequest, services=None) -> func.HttpResponse:
    try:
        services = services_or_error(services)
        services.storage.queue(CONTROL_QUEUE).get_queue_properties()
    except RequestError as exc:
        return request_error(exc)
    except AzureError as exc:
        return storage_error("Storage could not be reached", exc)
    return json_response(200, {"status": "healthy"})
