"""The installation registry: the chats where each app is installed, kept from Graph change
notifications (installation created / deleted) and seeded by full scans. Table `upgraderregistry`,
one partition per app."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.runs import MAX_OPS, chat_key
from shared.tracking import utcnow


def decode_installation_id(installation_id: str) -> tuple[str, str] | None:
    """A chat installation id is base64("{chatId}##{teamsAppId}"); None when it is not."""
    try:
        text = base64.b64decode(installation_id, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    chat_id, sep, app_id = text.rpartition("##")
    if not sep or not chat_id.startswith("19:") or not app_id:
        return None
    return chat_id, app_id


class Registry:
    def __init__(self, table: TableClient) -> None:
        self._table = table

    def add(self, app_id: str, chat_ids: Iterable[str], source: str) -> None:
        rows = [
            {"PartitionKey": app_id, "RowKey": chat_key(c), "chatId": c, "source": source, "updatedAt": utcnow()}
            for c in dict.fromkeys(chat_ids)
        ]
        for start in range(0, len(rows), MAX_OPS):
            self._table.submit_transaction(
                [("upsert", row, {"mode": UpdateMode.REPLACE}) for row in rows[start : start + MAX_OPS]]
            )

    def remove(self, app_id: str, chat_id: str) -> None:
        try:
            self._table.delete_entity(app_id, chat_key(chat_id))
        except ResourceNotFoundError:
            pass

    def chats(self, app_id: str) -> list[str]:
        rows = self._table.query_entities("PartitionKey eq @app", parameters={"app": app_id}, select=["chatId"])
        return [row["chatId"] for row in rows]

    def count(self, app_id: str) -> int:
        rows = self._table.query_entities("PartitionKey eq @app", parameters={"app": app_id}, select=["RowKey"])
        return sum(1 for _ in rows)
