"""The installation registry: where each app is installed (chats, teams, users), kept from Graph
change notifications (installation created / deleted) and seeded by full scans. Table
`upgraderregistry`, one partition per app, one row per target."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from urllib.parse import quote

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.domain.targets import Target
from shared.stores.keys import MAX_OPS
from shared.stores.tracking import utcnow


def _key(target: Target) -> str:
    return quote(target.key, safe=":@._-")


class Registry:
    def __init__(self, table: TableClient) -> None:
        self._table = table

    def add(self, app_id: str, targets: Iterable[Target], source: str) -> None:
        rows = [
            {
                "PartitionKey": app_id,
                "RowKey": _key(t),
                "scope": t.scope,
                "resourceId": t.id,
                "source": source,
                "updatedAt": utcnow(),
            }
            for t in dict.fromkeys(targets)
        ]
        for start in range(0, len(rows), MAX_OPS):
            self._table.submit_transaction(
                [("upsert", row, {"mode": UpdateMode.REPLACE}) for row in rows[start : start + MAX_OPS]]
            )

    def remove(self, app_id: str, target: Target) -> None:
        try:
            self._table.delete_entity(app_id, _key(target))
        except ResourceNotFoundError:
            pass

    def targets(self, app_id: str, scope: str) -> list[Target]:
        rows = self._table.query_entities(
            "PartitionKey eq @app and scope eq @scope", parameters={"app": app_id, "scope": scope}, select=["resourceId"]
        )
        return [Target(scope, row["resourceId"]) for row in rows]

    def counts(self, app_id: str) -> dict[str, int]:
        """Installations known per scope."""
        rows = self._table.query_entities("PartitionKey eq @app", parameters={"app": app_id}, select=["scope"])
        return dict(Counter(row["scope"] for row in rows))
