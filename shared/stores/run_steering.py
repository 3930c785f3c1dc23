"""A run's steering, persisted in its run row (see domain.steering for what it means); and the
run's admissions, a counter taken exactly under any concurrency.

The store decides nothing: a change is a function of the steering as the row holds it, applied
conditionally on the row's ETag and applied again to a fresh read when someone was first, so that
concurrent operators and steps never undo each other's change."""

from __future__ import annotations

import json
from collections.abc import Callable

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.domain.runs import to_json
from shared.domain.steering import Caller, Steering
from shared.foundation.errors import ErrorInfo

ADMISSIONS = "admissions"  # the run partition's row counting the targets admitted to the plan's steps


def _json(row, name: str):
    return json.loads(row[name]) if row.get(name) else None


def steering_of(row) -> Steering:
    error = ErrorInfo(row["errorCode"], row.get("errorMessage", "")) if row.get("errorCode") else None
    base = _json(row, "stepBase") or [0, 0]
    return Steering(
        cancelled_at=row.get("cancelledAt") or None,
        cancelled_by=Caller.from_dict(_json(row, "cancelledBy")) if row.get("cancelledBy") else None,
        pause=_json(row, "pause"),
        wait=_json(row, "wait"),
        step=int(row.get("step") or 0),
        base=(int(base[0]), int(base[1])),
        results=tuple(_json(row, "stepResults") or ()),
        error=error,
        wake_at=row.get("wakeAt") or None,
    )


def steering_row(steering: Steering) -> dict:
    """The run row's properties that hold `steering`."""
    return {
        "cancelledAt": steering.cancelled_at or "",
        "cancelledBy": to_json(steering.cancelled_by.to_dict()) if steering.cancelled_by else "",
        "pause": to_json(steering.pause) if steering.pause else "",
        "wait": to_json(steering.wait) if steering.wait else "",
        "step": steering.step,
        "stepBase": json.dumps(list(steering.base)),
        "stepResults": json.dumps(list(steering.results), separators=(",", ":")),
        "errorCode": steering.error.code if steering.error else "",
        "errorMessage": steering.error.message if steering.error else "",
        "wakeAt": steering.wake_at or "",
    }


class RunSteering:
    _table: TableClient

    def _row(self, run_id: str):
        try:
            return self._table.get_entity(run_id, "run")
        except ResourceNotFoundError:
            return None

    def steering(self, run_id: str) -> Steering | None:
        """The run's steering as stored now (a fresh read; see stores.run_cache for a cached one)."""
        row = self._row(run_id)
        return None if row is None else steering_of(row)

    def change_steering(self, run_id: str, change: Callable[[Steering], Steering | None]) -> Steering | None:
        """Applies `change` to the run's steering, conditional on the row's ETag; returns the
        steering it stored, or None when `change` declines (nothing to do) or the run is unknown."""
        while True:
            row = self._row(run_id)
            if row is None:
                return None
            before = steering_of(row)
            after = change(before)
            if after is None or after == before:
                return None
            update = {k: v for k, v in steering_row(after).items() if v != steering_row(before)[k]}
            try:
                self._table.update_entity(
                    {"PartitionKey": run_id, "RowKey": "run", **update},
                    mode=UpdateMode.MERGE,
                    etag=row.metadata["etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
            except ResourceModifiedError:
                continue
            return after

    def take_admissions(self, run_id: str, count: int, limit: int) -> int:
        """Admits up to `count` more targets while fewer than `limit` are (gives back -`count`
        when negative), exactly under any concurrency; returns how many it admitted."""
        while True:
            try:
                row = self._table.get_entity(run_id, ADMISSIONS)
            except ResourceNotFoundError:
                row = None
            taken = int(row.get("taken", 0)) if row else 0
            mine = max(-taken, min(count, limit - taken))
            if mine == 0:
                return 0
            entity = {"PartitionKey": run_id, "RowKey": ADMISSIONS, "taken": taken + mine}
            try:
                if row is None:
                    self._table.create_entity(entity)
                else:
                    self._table.update_entity(
                        entity, mode=UpdateMode.MERGE, etag=row.metadata["etag"], match_condition=MatchConditions.IfNotModified
                    )
            except (ResourceModifiedError, ResourceExistsError):
                continue
            return mine

    def admissions(self, run_id: str) -> int:
        try:
            return int(self._table.get_entity(run_id, ADMISSIONS).get("taken", 0))
        except ResourceNotFoundError:
            return 0
