"""Deleting what a finished run no longer needs (RUN_RETENTION): its target rows, failure rows,
counter shards of its target partitions, step and input rows. What stays: the run row, its own
counter shards, and its final status document (failures as recorded), stored compressed in the
run partition, so that its status and the run history still answer.

The purge is resumable: the document is stored and the run row marked first (from then on the
status is read from the document), then the rows go, partition by partition, in transactions of
100 deletes; the history index learns of the purge last."""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterator

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from shared.stores.partitions import MAX_OPS, target_partitions

DOCUMENT_CHUNK = 60_000  # bytes of compressed JSON per row: under the 64 KiB binary property limit
KEPT_IN_RUN_PARTITION = ("run", "count-", "final-")


def _chunks(document: dict) -> list[bytes]:
    blob = zlib.compress(json.dumps(document, separators=(",", ":")).encode())
    return [blob[i : i + DOCUMENT_CHUNK] for i in range(0, len(blob), DOCUMENT_CHUNK)] or [blob]


class Purging:
    def __init__(self, table: TableClient) -> None:
        self._table = table

    def keep_document(self, run_id: str, document: dict, purged_at: str) -> None:
        """Stores the run's final status document and marks the run purged (the status is read from it from now on)."""
        for i, chunk in enumerate(_chunks(document)):
            self._table.upsert_entity({"PartitionKey": run_id, "RowKey": f"final-{i:04d}", "document": chunk})
        self._table.update_entity({"PartitionKey": run_id, "RowKey": "run", "targetsPurgedAt": purged_at}, mode=UpdateMode.MERGE)

    def document(self, run_id: str) -> dict:
        rows = self._table.query_entities(
            "PartitionKey eq @p and RowKey ge 'final-' and RowKey lt 'final.'", parameters={"p": run_id}
        )
        blob = b"".join(row["document"] for row in sorted(rows, key=lambda r: r["RowKey"]))
        return json.loads(zlib.decompress(blob))

    def deletions(self, run_id: str) -> Iterator[tuple[str, list[str]]]:
        """What is left to delete: (partition, up to 100 row keys), the target partitions first."""
        for partition in target_partitions(run_id):
            yield from self._batches(partition, lambda key: True)
        yield from self._batches(run_id, lambda key: not key.startswith(KEPT_IN_RUN_PARTITION))

    def _batches(self, partition: str, doomed: Callable[[str], bool]) -> Iterator[tuple[str, list[str]]]:
        rows = self._table.query_entities("PartitionKey eq @p", parameters={"p": partition}, select=["RowKey"])
        keys = [row["RowKey"] for row in rows if doomed(row["RowKey"])]
        for start in range(0, len(keys), MAX_OPS):
            yield partition, keys[start : start + MAX_OPS]

    def delete(self, partition: str, keys: list[str]) -> None:
        """One transaction of deletes (a row gone already is no error: the purge may be resumed)."""
        try:
            self._table.submit_transaction([("delete", {"PartitionKey": partition, "RowKey": key}) for key in keys])
        except TableTransactionError:  # one was gone: the others one by one
            for key in keys:
                try:
                    self._table.delete_entity(partition, key)
                except ResourceNotFoundError:
                    pass
