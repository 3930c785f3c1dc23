"""GET /api/health: the platform's health check (and an availability test's target). Anonymous,
quick and free of detail: healthy when the settings load and storage answers, with the release."""

from __future__ import annotations

import azure.functions as func

from shared import __version__
from shared.foundation.storage import CONTROL_QUEUE
from shared.http.responses import answer, json_response, services_or_error


def health(req: func.HttpRequest, services=None) -> func.HttpResponse:
    def work() -> func.HttpResponse:
        services_or_error(services).storage.queue(CONTROL_QUEUE).get_queue_properties()
        return json_response(200, {"status": "healthy", "version": __version__})

    return answer("Storage could not be reached", work)
