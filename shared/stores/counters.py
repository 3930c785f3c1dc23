"""Exact counters under any concurrency: each change is committed in the same table transaction as
the rows it counts, to one of a partition's counter shards (`count-00`..`count-15`)."""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from azure.core import MatchConditions
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from shared.stores.partitions import CHANGED, EXISTS, REPLAYABLE_METHODS, TARGET_PARTITIONS

SHARDS = 16
CACHED_RUNS = 4  # runs whose shards' ETags a process keeps (the ones it works on now)


def counter_totals(rows) -> dict[str, int]:
    """The sum of every integer property over counter rows."""
    totals: dict[str, int] = {}
    for row in rows:
        for key, value in row.items():
            if isinstance(value, int) and not isinstance(value, bool):
                totals[key] = totals.get(key, 0) + value
    return totals


class Counters:
    """Counter shards of a table's partitions, written by many threads of many processes.

    Threads of one process never write the same shard of a partition at once: each commit leases
    one no other commit of this process holds, so the ETag this process cached from its last write
    is still current, and the write goes through the first time. Processes start at different
    shards and move when they meet (a 412 or 409 from a write of another process): a conflict is a
    resent transaction, with every row it carries, so conflicts must stay rare for the writes per
    counted row to stay the same whatever a run's length.
    """

    def __init__(self, table: TableClient, *, shards: int = SHARDS) -> None:
        self._table = table
        self._shards = shards
        self._cache: dict[tuple[str, int], tuple[dict, str]] = {}  # (partition, shard) -> (values, ETag)
        self._leased: Counter[tuple[str, int]] = Counter()  # (partition, shard) -> commits of this process on it
        self._first = random.randrange(shards)  # noqa: S311 - spreads writers over shards, guards nothing
        self._lock = threading.Lock()

    def submit(self, ops: list) -> list[dict]:
        """A transaction that callers handle as replayable (see REPLAYABLE_METHODS)."""
        return self._table.submit_transaction(ops, retry_on_methods=REPLAYABLE_METHODS)

    def commit(self, partition: str, ops: list, deltas: dict[str, int]) -> list[dict]:
        """Submits `ops` (rows of `partition`) together with `deltas` added to one of its counter
        shards, atomically; returns the results of `ops`.

        A shard not seen yet is assumed new and created without reading it first (most are: each
        process writes its own shards of each partition); if it exists (409), it is read and the
        transaction sent again to update it. A shard changed by another process (412) sends this
        process on to other shards. An error on one of `ops` is raised to the caller with its index.
        """
        deltas = {k: v for k, v in deltas.items() if v}
        if not deltas:
            return self.submit(ops) if ops else []
        while True:
            with self._lease(partition) as shard:
                results = self._commit_on(partition, shard, ops, deltas)
            if results is not None:
                return results

    @contextmanager
    def _lease(self, partition: str) -> Iterator[int]:
        """Holds the first shard of this process's order that no commit of this process holds now
        (its first shard again when all are held: the conflict is then handled as any other)."""
        with self._lock:
            order = [(self._first + i) % self._shards for i in range(self._shards)]
            shard = next((s for s in order if (partition, s) not in self._leased), order[0])
            key = (partition, shard)
            self._leased[key] += 1
        try:
            yield shard
        finally:
            with self._lock:
                self._leased[key] -= 1
                if not self._leased[key]:
                    del self._leased[key]

    def _commit_on(self, partition: str, shard: int, ops: list, deltas: dict[str, int]) -> list[dict] | None:
        """The transaction on one shard; None when another process wrote the shard first."""
        key = (partition, shard)
        with self._lock:
            cached = self._cache.get(key)
        values, etag = cached if cached else ({}, None)
        merged = {k: int(values.get(k, 0)) + v for k, v in deltas.items()}
        update = {"PartitionKey": partition, "RowKey": f"count-{shard:02d}", **merged}
        if etag is None:
            shard_op: tuple = ("create", update)
        else:
            options = {"mode": UpdateMode.MERGE, "etag": etag, "match_condition": MatchConditions.IfNotModified}
            shard_op = ("update", update, options)
        try:
            results = self.submit([*ops, shard_op])
        except TableTransactionError as exc:
            with self._lock:
                self._cache.pop(key, None)
            if exc.index != len(ops) or exc.error_code not in (CHANGED, EXISTS):
                raise
            if cached is None:  # it existed (created by another process, or forgotten here): read it
                fresh = self._read(partition, shard)
                with self._lock:
                    self._cache[key] = fresh
            else:  # another process writes it: this one moves on to other shards
                with self._lock:
                    self._first = random.randrange(self._shards)  # noqa: S311
            return None
        with self._lock:
            self._cache[key] = ({**values, **merged}, results[-1]["etag"])
            while len(self._cache) > CACHED_RUNS * (TARGET_PARTITIONS + 1) * self._shards:
                del self._cache[next(iter(self._cache))]
        return results[:-1]

    def _read(self, partition: str, shard: int) -> tuple[dict, str | None]:
        try:
            row = self._table.get_entity(partition, f"count-{shard:02d}")
        except ResourceNotFoundError:
            return {}, None  # not used yet: the commit creates it
        return dict(row), row.metadata["etag"]
