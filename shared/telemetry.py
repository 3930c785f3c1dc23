"""Structured log records. Properties go in `extra`, so that they reach Application Insights as
customDimensions; nothing here ever logs a token, a key or a connection string."""

from __future__ import annotations

import logging

chat_log = logging.getLogger("upgrader.chats")
run_log = logging.getLogger("upgrader.runs")


def log_chat(run, outcome) -> None:
    """One line per chat outcome: the record an operator searches for."""
    failure = outcome.failure or {}
    props = {
        "runId": run.run_id,
        "appId": run.target.teams_app_id if run.target else run.teams_app_id,
        "chatId": outcome.chat_id,
        "outcome": outcome.outcome,
        "targetVersion": run.target.version if run.target else None,
        "installedVersion": outcome.version,
        "graphStatus": failure.get("status"),
        "graphCode": failure.get("code"),
    }
    level = logging.WARNING if outcome.outcome == "failed" else logging.INFO
    detail = f": {failure.get('status')} {failure.get('code')} {failure.get('message')}" if failure else ""
    chat_log.log(level, "Chat %s %s (run %s)%s", outcome.chat_id, outcome.outcome, run.run_id, detail, extra=props)


def log_run(level: int, message: str, *args, **props) -> None:
    run_log.log(level, message, *args, extra=props)
