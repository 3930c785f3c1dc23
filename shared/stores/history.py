"""The run history: an index of runs, newest first, in partitions of the runs table ("history",
and "history-<appId>" per app), so that listing runs reads a page of index rows and never a
run's targets. RowKey = inverted creation time (milliseconds) + run id.

An index row holds the run's status document once the run is over (it no longer changes): the
history of thousands of runs reads their index rows only, and filters by state on the server. The
few runs still going are read live, and their document is stored when they are found over.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime

from azure.data.tables import TableClient, UpdateMode

from shared.domain.runs import FINAL_STATES

EPOCH_END_MS = 10**13  # later than any creation time in milliseconds, for newest-first keys
HISTORY_KEY = re.compile(r"^[0-9]{13}[0-9a-f]{32}$")
MAX_EXAMINED = 500  # index rows one page reads at most: a page may hold fewer runs and a nextLink


def _key(run_id: str, created_at: str) -> str:
    moment = datetime.fromisoformat(created_at.replace("Z", "+00:00"))
    return f"{EPOCH_END_MS - int(moment.timestamp() * 1000):013d}{run_id}"


def _partitions(app_id: str | None) -> list[str]:
    return ["history", *([f"history-{app_id}"] if app_id else [])]


def settled(document: dict) -> bool:
    """Over for good: a final state with nothing left to decide."""
    return document["state"] in FINAL_STATES and document["counts"]["pending"] == 0


class RunHistory:
    def __init__(self, table: TableClient) -> None:
        self._table = table

    def add(self, run_id: str, app_id: str | None, created_at: str) -> None:
        for partition in _partitions(app_id):
            self._index(partition, run_id, created_at)

    def index_app(self, run_id: str, app_id: str, created_at: str) -> None:
        """A run published by manifest id is indexed under its app once the start step knows it."""
        self._index(f"history-{app_id}", run_id, created_at)

    def _index(self, partition: str, run_id: str, created_at: str) -> None:
        row = {"PartitionKey": partition, "RowKey": _key(run_id, created_at), "runId": run_id, "state": "", "document": ""}
        self._table.upsert_entity(row, mode=UpdateMode.REPLACE)

    def page(
        self,
        *,
        app_id: str | None,
        state: str | None,
        after: str | None,
        limit: int,
        live: Callable[[str], dict | None],
    ) -> tuple[list[dict], str | None]:
        """Up to `limit` status documents, newest first, after the index key `after`, in `state`
        if given; and the key to go on from (None at the end). `live` reads a run's document."""
        partition = f"history-{app_id}" if app_id else "history"
        query = "PartitionKey eq @p" + (" and RowKey gt @after" if after else "")
        if state:
            query += " and (state eq @state or state eq '')"  # over in that state, or still going
        rows = self._table.query_entities(
            query,
            parameters={"p": partition, "after": after or "", "state": state or ""},
            select=["RowKey", "runId", "document"],
            results_per_page=min(limit, MAX_EXAMINED),
        )
        documents: list[dict] = []
        examined = 0
        last = after
        for row in rows:
            if len(documents) == limit or examined == MAX_EXAMINED:
                return documents, last
            examined += 1
            last = row["RowKey"]
            document = json.loads(row["document"]) if row.get("document") else live(row["runId"])
            if document is None:
                continue  # indexed, then its creation failed
            if not row.get("document") and settled(document):
                self._store(row["RowKey"], document)
            if state is None or document["state"] == state:
                documents.append(document)
        return documents, None

    def finished(self, before: str) -> list[tuple[str, dict]]:
        """(index key, status document) of every run over and last changed before `before` (ISO)
        whose target rows are still kept, oldest first."""
        rows = self._table.query_entities("PartitionKey eq 'history' and state ne ''", select=["RowKey", "document"])
        found = [(row["RowKey"], json.loads(row["document"])) for row in rows if row.get("document")]
        old = [(key, d) for key, d in found if d["updatedAt"] < before and not d.get("targetsPurgedAt")]
        return sorted(old, key=lambda item: item[0], reverse=True)

    def note_purged(self, key: str, document: dict) -> None:
        self._store(key, document)

    def going(self, live: Callable[[str], dict | None]) -> list[dict]:
        """The status documents of every run not over yet (their index rows hold no document);
        those found over meanwhile get their document stored."""
        rows = self._table.query_entities("PartitionKey eq 'history' and state eq ''", select=["RowKey", "runId"])
        documents = []
        for row in rows:
            document = live(row["runId"])
            if document is None:
                continue
            if settled(document):
                self._store(row["RowKey"], document)
            else:
                documents.append(document)
        return documents

    def _store(self, key: str, document: dict) -> None:
        text = json.dumps(document, separators=(",", ":"))
        for partition in _partitions(document.get("teamsAppId")):
            entity = {"PartitionKey": partition, "RowKey": key, "state": document["state"], "document": text}
            self._table.upsert_entity(entity, mode=UpdateMode.MERGE)
