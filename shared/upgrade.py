"""Per chat: look up the installation, decide, upgrade once. A batch of chats per queue message.

A batch interleaves its requests so that the one-request-per-second-per-chat limit costs no
throughput: after each GET it POSTs the outdated chats whose GET is at least CHAT_SPACING old
(other chats' requests fill the gap), and the rest at the end.

Never twice: a chat is claimed (ETag-checked) before its POST, and a chat found claimed by a
crashed attempt is re-checked with a GET; if it is already at the target version, that attempt's
POST went through and the chat counts as upgraded.
"""

from __future__ import annotations

import math
import time
import uuid
from collections import deque
from dataclasses import dataclass

from shared.catalog import TargetApp, odata_string
from shared.errors import GraphError, GraphRetryable
from shared.graph import GraphClient, segment
from shared.messages import UpgradeChats
from shared.runs import ChatRow, Outcome, RunRecord, RunStore
from shared.telemetry import event, log_chat
from shared.versions import is_at_least

INSTALLED_APPS_GET = "installedApps.get"
INSTALLED_APPS_POST = "installedApps.post"
CHAT_SPACING = 1.02  # seconds; Graph allows one request per second on any one chat


@dataclass(frozen=True)
class Installation:
    id: str
    version: str | None


def find_installation(body: dict | None, teams_app_id: str) -> Installation | None:
    for item in (body or {}).get("value", []):
        if not isinstance(item, dict) or not item.get("id"):
            continue
        app = item.get("teamsApp") or {}
        if app.get("id") and app["id"].lower() != teams_app_id.lower():
            continue  # the $filter should have excluded it
        return Installation(item["id"], (item.get("teamsAppDefinition") or {}).get("version"))
    return None


def get_installation(graph: GraphClient, chat_id: str, teams_app_id: str):
    response = graph.get(
        f"/chats/{segment(chat_id)}/installedApps",
        params={"$expand": "teamsApp,teamsAppDefinition", "$filter": f"teamsApp/id eq {odata_string(teams_app_id)}"},
        bucket=INSTALLED_APPS_GET,
    )
    return find_installation(response.body, teams_app_id), response.received_at


def post_upgrade(graph: GraphClient, chat_id: str, installation_id: str, target: TargetApp, not_before: float) -> None:
    graph.post(
        f"/chats/{segment(chat_id)}/installedApps/{segment(installation_id)}/upgrade",
        target.upgrade_body(),
        bucket=INSTALLED_APPS_POST,
        not_before=not_before,
        retry_unavailable=False,  # a 5xx may have upgraded the chat: re-check with a GET before any retry
    )


def _failure(error: GraphError) -> dict:
    return {"status": error.status, "code": error.code, "message": error.message}


class BatchUpgrader:
    """Processes one UpgradeChats message."""

    def __init__(self, *, graph: GraphClient, runs: RunStore, max_attempts: int, requeue) -> None:
        self._graph = graph
        self._runs = runs
        self._max_attempts = max_attempts
        self._requeue = requeue  # (UpgradeChats, delay_seconds) -> None

    def process(self, run: RunRecord, message: UpgradeChats, message_id: str, dequeue_count: int = 1) -> list[Outcome]:
        target = run.target
        if target is None:
            raise RuntimeError(f"run {run.run_id} has chats queued but no target yet")
        chain = message.claim or message_id
        if dequeue_count == 1 and len(message.etags) == len(message.chat_ids):  # as queued: no need to read them
            rows = {c: ChatRow(c, "pending", e) for c, e in zip(message.chat_ids, message.etags, strict=True)}
        else:
            rows = self._runs.get_chats(run.run_id, message.chat_ids)
        work = [rows[c] for c in dict.fromkeys(message.chat_ids) if c in rows and rows[c].open_to(chain)]

        outcomes: list[Outcome] = []
        retry: dict[str, GraphRetryable] = {}
        due: deque[tuple[ChatRow, Installation, float]] = deque()  # outdated chats, in the order of their GETs
        claim = f"{chain}:{uuid.uuid4().hex[:8]}"
        for row in work:
            found = self._call(
                row.chat_id, lambda c=row.chat_id: get_installation(self._graph, c, target.teams_app_id), retry, outcomes
            )
            if found is not None:
                installation, received_at = found
                if installation is None:
                    outcomes.append(Outcome(row.chat_id, "notInstalled"))
                elif installation.version and is_at_least(installation.version, target.version):
                    # a claimed chat now current was upgraded by an attempt that died before recording it
                    outcome = "upgraded" if row.state == "claimed" else "alreadyCurrent"
                    outcomes.append(Outcome(row.chat_id, outcome, version=installation.version))
                elif run.dry_run:
                    outcomes.append(Outcome(row.chat_id, "wouldUpgrade", version=installation.version))
                else:
                    due.append((row, installation, received_at + CHAT_SPACING))
            self._upgrade(run.run_id, target, due, claim, retry, outcomes, until=time.time())
        self._upgrade(run.run_id, target, due, claim, retry, outcomes, until=None)
        recorded = self._runs.record(run.run_id, rows, outcomes, chain)

        if retry:
            recorded += self._reschedule(run, message, chain, rows, retry)
        for outcome in recorded:
            log_chat(run, outcome)
        return recorded

    def _upgrade(self, run_id: str, target: TargetApp, due: deque, claim: str, retry: dict, outcomes: list[Outcome], *, until):
        """POSTs the outdated chats whose spacing after their own GET has passed (all, when until is None).

        Called after every GET, so that a batch's POSTs go out between its GETs: the POST bucket
        then sees steady demand instead of a burst at the end of each batch.
        """
        ready = []
        while due and (until is None or due[0][2] <= until):
            ready.append(due.popleft())
        if not ready:
            return
        claimed = {r.chat_id for r in self._runs.claim(run_id, [r for r, _, _ in ready], claim)}
        for row, installation, not_before in ready:
            if row.chat_id not in claimed:
                continue
            posted = self._call(
                row.chat_id,
                lambda r=row, i=installation, t=not_before: post_upgrade(self._graph, r.chat_id, i.id, target, t),
                retry,
                outcomes,
            )
            if posted is not None:
                outcomes.append(Outcome(row.chat_id, "upgraded", version=target.version))

    def _call(self, chat_id: str, call, retry: dict[str, GraphRetryable], outcomes: list[Outcome]):
        """Runs one Graph call for a chat; a retryable error goes to `retry`, a final one to `outcomes`.

        Returns the call's result wrapped in a tuple-or-True, or None when the call failed.
        """
        try:
            return call() or True
        except GraphRetryable as exc:
            retry[chat_id] = exc
        except GraphError as exc:
            outcomes.append(self._graph_failure(chat_id, exc))
        return None

    @staticmethod
    def _graph_failure(chat_id: str, error: GraphError) -> Outcome:
        if error.status == 404:
            return Outcome(chat_id, "notInstalled")  # chat gone or app removed meanwhile
        return Outcome(chat_id, "failed", failure=_failure(error))

    def _reschedule(
        self, run: RunRecord, message: UpgradeChats, chain: str, rows, retry: dict[str, GraphRetryable]
    ) -> list[Outcome]:
        if message.attempt + 1 >= self._max_attempts:
            gave_up = [Outcome(c, "failed", failure=_failure(e)) for c, e in retry.items()]
            return self._runs.record(run.run_id, rows, gave_up, chain)
        delay = math.ceil(max(e.retry_after for e in retry.values()))
        self._requeue(UpgradeChats(run_id=run.run_id, chat_ids=tuple(retry), attempt=message.attempt + 1, claim=chain), delay)
        for chat_id, error in retry.items():
            event(
                "rescheduled",
                "Chat %s of run %s waits %d s: %s %s (attempt %d)",
                chat_id,
                run.run_id,
                delay,
                error.status,
                error.code,
                message.attempt + 2,
                runId=run.run_id,
                appId=run.target.teams_app_id,
                chatId=chat_id,
                outcome="rescheduled",
                graphStatus=error.status,
                graphCode=error.code,
                retryAfter=delay,
            )
        return []
