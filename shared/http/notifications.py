"""POST /api/notifications: Graph change notifications for installations of watched apps.

It only validates and enqueues, so it answers well within Graph's 3 seconds (10 for the validation
handshake): the validation token is echoed as text/plain; each notification's clientState is
compared in constant time with NOTIFICATION_CLIENT_STATE (mismatches are dropped and logged); the
rest go to a queue in one message (a few when Graph batches many), written by the output binding,
so a failure to persist is a 5xx and Graph retries.
"""

from __future__ import annotations

import hmac
import html
import json
import logging

import azure.functions as func

from shared.domain.messages import MAX_MESSAGE_BYTES, Notifications
from shared.foundation.errors import ErrorInfo
from shared.foundation.settings import ConfigError, Settings
from shared.foundation.telemetry import event
from shared.http.responses import error_response

KEPT = (
    "subscriptionId",
    "changeType",
    "resource",
    "resourceData",
    "lifecycleEvent",
    "tenantId",
    "subscriptionExpirationDateTime",
)


def _bad(message: str) -> func.HttpResponse:
    return error_response(400, ErrorInfo("invalidNotification", message))


def _batches(items: list[dict]) -> list[str]:
    messages, batch, size = [], [], 64
    for item in items:
        item_size = len(json.dumps(item, separators=(",", ":")).encode()) + 1
        if batch and size + item_size > MAX_MESSAGE_BYTES:
            messages.append(Notifications(items=batch).encode())
            batch, size = [], 64
        batch.append(item)
        size += item_size
    if batch:
        messages.append(Notifications(items=batch).encode())
    return messages


def receive(req: func.HttpRequest, out: func.Out) -> func.HttpResponse:
    token = req.params.get("validationToken")
    if token is not None:  # the subscription validation handshake: echo the (decoded) token
        return func.HttpResponse(html.escape(token), status_code=200, mimetype="text/plain")
    try:
        body = json.loads(req.get_body())
    except (ValueError, UnicodeDecodeError):
        return _bad("The body is not JSON.")
    if not isinstance(body, dict) or not isinstance(body.get("value"), list):
        return _bad('The body must be an object with a "value" array of notifications.')
    try:
        expected = Settings.from_env().notification_client_state
    except ConfigError as exc:
        return error_response(500, ErrorInfo("configurationError", str(exc)))
    accepted, dropped = [], 0
    for item in body["value"]:
        state = item.get("clientState") if isinstance(item, dict) else None
        if not expected or not isinstance(state, str) or not hmac.compare_digest(state.encode(), expected.encode()):
            dropped += 1
            continue
        accepted.append({k: item[k] for k in KEPT if k in item})
    if dropped:
        event(
            "notificationsDropped",
            "Dropped %d of %d notifications: clientState missing or not ours",
            dropped,
            len(body["value"]),
            dropped=dropped,
            level=logging.WARNING,
        )
    if accepted:
        out.set(_batches(accepted))
    return func.HttpResponse(status_code=202)
