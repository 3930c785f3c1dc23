"""Reading a queue message: decoded, and checked to belong on its queue (a dispatch table's key)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import azure.functions as func

from shared.domain.messages import Message, RunMessage, decode
from shared.foundation.errors import MalformedMessage
from shared.foundation.telemetry import event
from shared.services import Services


def decoded(msg: func.QueueMessage, table: Mapping[type, object]) -> Message:
    """The message, one of the kinds `table` handles; MalformedMessage otherwise (retried, then poisoned)."""
    message = decode(msg.get_body())
    if type(message) not in table:
        raise MalformedMessage(f"{message.kind} does not belong on this queue")
    return message


def poisoned(msg: func.QueueMessage, table: Mapping[type, object], queue: str, services: Services) -> Message | None:
    """The message of a poison queue, or None (logged, dropped) when it is not one of ours."""
    try:
        message = decoded(msg, table)
        if isinstance(message, RunMessage) and services.runs.get_run(message.run_id) is None:
            raise MalformedMessage(f"unknown run {message.run_id}")
    except MalformedMessage as exc:
        body = msg.get_body()[:200].decode("utf-8", "replace")
        event("poisoned", "Dropped an undecodable message from %s (%s): %r", queue, exc, body, queue=queue, level=logging.ERROR)
        return None
    return message
