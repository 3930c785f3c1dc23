"""Where a run's rows live in the runs table: partitions, row keys, and packed lists.

Rows of the run partition (PartitionKey = run id): the run row, counter shards, step rows and input
chunks. Rows of a target partition (PartitionKey = run id + "-NN", NN from a hash of the target key):
target rows (`t-<scope>:<id>`), failure rows (`f-...`) and those partitions' counter shards.

Spreading the targets keeps every partition small: a point write costs the store a look-up within
its partition, and one partition per run would make every claim and record slower as the run grows
(and would concentrate a large run's writes on one partition server).
"""

from __future__ import annotations

import itertools
import json
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor
from datetime import UTC, datetime
from typing import TypeVar
from urllib.parse import quote

from azure.data.tables import TableClient

from shared.domain.targets import Target

T = TypeVar("T")
TARGET_PARTITIONS = 32
MAX_OPS = 100  # per table transaction
CHANGED = "UpdateConditionNotSatisfied"  # an ETag-conditional write found the entity changed
EXISTS = "EntityAlreadyExists"
# The SDK does not resend a POST whose answer was lost (the connection died under it). Our
# transactions may be resent: each holds an ETag-conditional or create operation, so a resent
# transaction that had gone through fails on it, and the callers re-read what they find changed.
REPLAYABLE_METHODS = frozenset({"HEAD", "GET", "PUT", "DELETE", "OPTIONS", "TRACE", "POST"})
INPUT_CHUNK_BYTES = 60_000  # raw; stays under the 64 KiB binary property limit once compressed
RUN_PARTITIONS = "PartitionKey ge @run and PartitionKey lt @end"  # with run_range(run_id)
TARGET_ROWS = "RowKey ge 't-' and RowKey lt 't.'"
FAILURE_ROWS = "RowKey ge 'f-' and RowKey lt 'f.'"
COUNTER_ROWS = "RowKey ge 'count-' and RowKey lt 'count.'"


def now_iso() -> str:
    return iso(datetime.now(UTC))


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def pack(values: list[str]) -> bytes:
    return zlib.compress(json.dumps(values, separators=(",", ":")).encode())


def unpack(blob: bytes | None) -> list[str]:
    return json.loads(zlib.decompress(blob)) if blob else []


def run_range(run_id: str) -> dict[str, str]:
    """Parameters for RUN_PARTITIONS: the run partition and its target partitions ("<run>-NN"); run
    ids are 32 hex digits, so no other run's partition falls inside."""
    return {"run": run_id, "end": run_id + "."}


def target_partitions(run_id: str) -> list[str]:
    return spread_partitions(run_id, TARGET_PARTITIONS)


def spread_partitions(prefix: str, partitions: int) -> list[str]:
    """Every partition spread_partition may choose."""
    return [f"{prefix}-{n:02d}" for n in range(partitions)]


def target_partition(run_id: str, target: Target) -> str:
    return spread_partition(run_id, target, TARGET_PARTITIONS)


def spread_partition(prefix: str, target: Target, partitions: int) -> str:
    """One of `partitions` partitions "<prefix>-NN", by a hash of the target."""
    return f"{prefix}-{zlib.crc32(target.key.encode()) % partitions:02d}"


def query_partitions(
    table: TableClient,
    readers: Executor,
    partitions: Iterable[str],
    where: str = "",
    *,
    parameters: dict | None = None,
    select: list[str] | None = None,
    limit: int | None = None,
) -> list:
    """The rows of several partitions (`where` narrows each; at most `limit` from each), read at once by `readers`."""
    clause = f"PartitionKey eq @p and {where}" if where else "PartitionKey eq @p"

    def query(partition: str) -> list:
        found = table.query_entities(clause, parameters={**(parameters or {}), "p": partition}, select=select)
        return list(itertools.islice(found, limit))

    return [row for part in readers.map(query, partitions) for row in part]


def row_key(target: Target, prefix: str = "t-") -> str:
    """RowKeys may not hold / \\ # ? or control characters; percent-encode all but the usual."""
    return prefix + quote(target.key, safe=":@._-")


def by_partition(
    run_id: str,
    items: Iterable[T],
    target_of: Callable[[T], Target],
    partition_of: Callable[[str, Target], str] = target_partition,
) -> dict[str, list[T]]:
    """Groups items by the partition of their target, keeping their order within each group."""
    groups: dict[str, list[T]] = {}
    for item in items:
        groups.setdefault(partition_of(run_id, target_of(item)), []).append(item)
    return groups


def partition_batches(
    run_id: str,
    items: Iterable[T],
    size: int,
    target_of: Callable[[T], Target],
    partition_of: Callable[[str, Target], str] = target_partition,
) -> Iterator[tuple[str, list[T]]]:
    """Items by partition (a run's target partitions unless said), in batches of at most `size`:
    one table transaction each."""
    for partition, group in by_partition(run_id, items, target_of, partition_of).items():
        for start in range(0, len(group), size):
            yield partition, group[start : start + size]


def chunk_keys(keys: list[str]) -> list[list[str]]:
    """Target keys in chunks that each fit one table property once packed."""
    chunks: list[list[str]] = [[]]
    size = 0
    for key in keys:
        if chunks[-1] and size + len(key) + 4 > INPUT_CHUNK_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(key)
        size += len(key) + 4
    return [c for c in chunks if c]
