"""Exact counters under any concurrency: each change is committed in the same table transaction as
the rows it counts, to one of a partition's counter shards (`count-00`..`count-15`)."""

from __future__ import annotations

import random
import threading

from azure.core import MatchConditions
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from shared.stores.keys import CHANGED, EXISTS, REPLAYABLE_METHODS, TARGET_PARTITIONS

SHARDS = 16


def counter_totals(rows) -> dict[str, int]:
    """The sum of every integer property over counter rows."""
    totals: dict[str, int] = {}
    for row in rows:
        for key, value in row.items():
            if isinstance(value, int) and not isinstance(value, bool):
                totals[key] = totals.get(key, 0) + value
    return totals


class Counters:
    def __init__(self, table: TableClient, *, shards: int = SHARDS) -> None:
        self._table = table
        self._shards = shards
        self._cache: dict[tuple[str, str], tuple[dict, str]] = {}
        # each process writes one shard while nobody else does, so its cached ETag stays valid
        self._home = random.randrange(shards)  # noqa: S311 - spreads writers over shards, guards nothing
        self._lock = threading.Lock()

    def submit(self, ops: list) -> list[dict]:
        """A transaction that callers handle as replayable (see REPLAYABLE_METHODS)."""
        return self._table.submit_transaction(ops, retry_on_methods=REPLAYABLE_METHODS)

    def commit(self, partition: str, ops: list, deltas: dict[str, int]) -> list[dict]:
        """Submits `ops` (rows of `partition`) together with `deltas` added to one of its counter
        shards, atomically; returns the results of `ops`.

        A shard not seen yet is assumed new and created without reading it first (most are: each
        process writes its own shard of each partition); if it exists, it is read and updated. A
        shard changed (412) or created (409) by someone else meanwhile is retried on another shard;
        an error on one of `ops` is raised to the caller with its index.
        """
        deltas = {k: v for k, v in deltas.items() if v}
        if not deltas:
            return self.submit(ops) if ops else []
        while True:
            shard = f"count-{self._home:02d}"
            with self._lock:
                cached = self._cache.get((partition, shard))
            values, etag = cached if cached else ({}, None)
            merged = {k: int(values.get(k, 0)) + v for k, v in deltas.items()}
            update = {"PartitionKey": partition, "RowKey": shard, **merged}
            if etag is None:
                shard_op: tuple = ("create", update)
            else:
                options = {"mode": UpdateMode.MERGE, "etag": etag, "match_condition": MatchConditions.IfNotModified}
                shard_op = ("update", update, options)
            try:
                results = self.submit([*ops, shard_op])
            except TableTransactionError as exc:
                with self._lock:
                    self._cache.pop((partition, shard), None)
                if exc.index != len(ops) or exc.error_code not in (CHANGED, EXISTS):
                    raise
                if cached is None:  # it existed: update what it holds
                    fresh = self._read(partition, shard)
                    with self._lock:
                        self._cache[(partition, shard)] = fresh
                else:
                    self._home = random.randrange(self._shards)  # noqa: S311 - someone else writes it: move
                continue
            with self._lock:
                self._cache[(partition, shard)] = ({**values, **merged}, results[-1]["etag"])
                while len(self._cache) > 4 * (TARGET_PARTITIONS + 1):  # a few runs' worth
                    del self._cache[next(iter(self._cache))]
            return results[:-1]

    def _read(self, partition: str, shard: str) -> tuple[dict, str | None]:
        try:
            row = self._table.get_entity(partition, shard)
        except ResourceNotFoundError:
            return {}, None  # not used yet: the commit creates it
        return dict(row), row.metadata["etag"]
