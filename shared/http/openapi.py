"""GET /api/openapi.json: the HTTP API described as OpenAPI 3 (the document is openapi.json beside
this module), with the server this request reached, for API Management or a client generator."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import azure.functions as func

from shared.http.responses import json_response

DOCUMENT = Path(__file__).with_name("openapi.json")


@functools.cache
def load() -> dict:
    return json.loads(DOCUMENT.read_text(encoding="utf-8"))


def document(req: func.HttpRequest) -> func.HttpResponse:
    base = req.url.split("?", 1)[0].rsplit("/openapi.json", 1)[0]
    return json_response(200, {**load(), "servers": [{"url": base}]})
