"""The shared pacing schedule: a row per throttling bucket in a storage table, holding the time of
the next free slot. Blocks of slots are reserved with one conditional update (ETag), so slots
never overlap, whatever the number of instances."""

from __future__ import annotations

import threading
from collections.abc import Callable

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode


class TableSchedule:
    """The shared schedule: PartitionKey 'schedule', RowKey = bucket, property `next` (epoch seconds)."""

    def __init__(self, table: TableClient) -> None:
        self._table = table
        self._lock = threading.Lock()
        self._known: dict[str, tuple[float, str | None]] = {}  # key -> (next, etag) as last seen

    def reserve(self, key: str, count: int, interval: float, earliest: float) -> float:
        """Reserves `count` slots `interval` apart, at or after `earliest`; returns the first."""
        return self._update(key, lambda nxt: max(nxt, earliest), count * interval)

    def push(self, key: str, until: float) -> None:
        """No slot before `until` for anyone (Retry-After)."""
        self._update(key, lambda nxt: max(nxt, until), 0.0)

    def _read(self, key: str) -> tuple[float, str | None]:
        try:
            entity = self._table.get_entity("schedule", key)
        except ResourceNotFoundError:
            return 0.0, None
        return float(entity.get("next", 0.0)), entity.metadata["etag"]

    def _update(self, key: str, start_of: Callable[[float], float], length: float) -> float:
        with self._lock:
            known = self._known.get(key)
        nxt, etag = known if known else self._read(key)
        while True:
            start = start_of(nxt)
            entity = {"PartitionKey": "schedule", "RowKey": key, "next": start + length}
            try:
                if etag is None:
                    result = self._table.create_entity(entity)
                else:
                    result = self._table.update_entity(
                        entity, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified
                    )
            except (ResourceModifiedError, ResourceExistsError, ResourceNotFoundError):
                nxt, etag = self._read(key)
                continue
            with self._lock:
                self._known[key] = (start + length, result.get("etag"))
            return start
