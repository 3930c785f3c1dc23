"""The installation registry: where each app is installed (chats, teams, users), kept from Graph
change notifications (installation created / deleted) and seeded by full scans. Table
`upgraderregistry`, one row per target, spread over REGISTRY_PARTITIONS partitions per app
("<appId>-NN") so that a run reads a large registry in parallel rather than page after page."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import Executor, ThreadPoolExecutor
from urllib.parse import quote

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.domain.targets import Target
from shared.foundation.storage import PARTITION_READERS
from shared.stores.apps import utcnow
from shared.stores.partitions import MAX_OPS, partition_batches, query_partitions, spread_partition, spread_partitions

REGISTRY_PARTITIONS = 32


def _key(target: Target) -> str:
    return quote(target.key, safe=":@._-")


def _partition(app_id: str, target: Target) -> str:
    return spread_partition(app_id, target, REGISTRY_PARTITIONS)


def _partitions(app_id: str) -> list[str]:
    # the app's own id: where rows written before the registry was spread live (read, and deleted, never written)
    return [*spread_partitions(app_id, REGISTRY_PARTITIONS), app_id]


class Registry:
    def __init__(self, table: TableClient, *, readers: Executor | None = None) -> None:
        """`readers` reads the partitions at once (the storage account's pool; a pool of its own by default)."""
        self._table = table
        self._readers = readers or ThreadPoolExecutor(PARTITION_READERS, thread_name_prefix="partition-reader")

    def add(self, app_id: str, targets: Iterable[Target], source: str) -> None:
        now = utcnow()
        for partition, batch in partition_batches(app_id, dict.fromkeys(targets), MAX_OPS, lambda t: t, _partition):
            row = {"PartitionKey": partition, "source": source, "updatedAt": now}
            ops = [
                ("upsert", {**row, "RowKey": _key(t), "scope": t.scope, "resourceId": t.id}, {"mode": UpdateMode.REPLACE})
                for t in batch
            ]
            self._table.submit_transaction(ops)

    def remove(self, app_id: str, target: Target) -> None:
        for partition in (_partition(app_id, target), app_id):
            try:
                self._table.delete_entity(partition, _key(target))
            except ResourceNotFoundError:
                pass

    def targets(self, app_id: str, scope: str) -> list[Target]:
        """The app's installations in a scope, in an order that mixes the partitions. Read partition
        by partition, they would come grouped by the hash that also places a run's target rows: a
        run lays them out in chunks of this order, so each chunk's writes, and the first claims on
        them, would all fall on one or two of the run's partitions at once."""
        rows = query_partitions(
            self._table, self._readers, _partitions(app_id), "scope eq @scope", parameters={"scope": scope}, select=["resourceId"]
        )
        targets = list(dict.fromkeys(Target(scope, row["resourceId"]) for row in rows))
        # seeded: the same order on each read, so a run's layout (and a canary's choice) is reproducible
        random.Random(f"{app_id}/{scope}").shuffle(targets)  # noqa: S311 - spreads writes, guards nothing
        return targets

    def counts(self, app_id: str) -> dict[str, int]:
        """Installations known per scope."""
        rows = query_partitions(self._table, self._readers, _partitions(app_id), select=["scope", "RowKey"])
        return dict(Counter(scope for scope, _ in {(row["scope"], row["RowKey"]) for row in rows}))
