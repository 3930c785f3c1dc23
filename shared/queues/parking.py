"""A misconfigured app puts its queue work back instead of wearing it out.

A malformed setting fails every invocation alike. Left to the host, each message would be tried
`maxDequeueCount` times within a minute and moved to its poison queue, whose handler fails the same
way, and the runs the messages belong to would never end. Instead the message goes back on its
queue, hidden for PARK_SECONDS, and the invocation ends well: nothing is lost, and once the setting
is fixed (which restarts the app) each message is handled as it would have been. HTTP calls answer
`configurationError` meanwhile, naming the setting.
"""

from __future__ import annotations

import logging

import azure.functions as func

from shared import bootstrap
from shared.foundation.settings import ConfigError
from shared.foundation.telemetry import event
from shared.services import Services

PARK_SECONDS = 300


def services_or_park(msg: func.QueueMessage, queue: str, services: Services | None = None) -> Services | None:
    """The process's services; None when a malformed setting keeps them from being built, once the
    message is back on `queue` (a malformed storage setting raises: the host's retries apply)."""
    if services is not None:
        return services
    try:
        return bootstrap.get()
    except ConfigError as exc:
        bootstrap.storage_alone().queue(queue).send_message(msg.get_body().decode(), visibility_timeout=PARK_SECONDS)
        event(
            "configurationError",
            "Configuration error: %s. A message of %s is back on its queue for %d s, until the setting is fixed",
            exc,
            queue,
            PARK_SECONDS,
            queue=queue,
            level=logging.ERROR,
        )
        return None
