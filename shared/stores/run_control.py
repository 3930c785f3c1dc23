"""How a run is steered, in its run row: cancelled, paused, its canary phase, failed for good; and
slot counters taken exactly under any concurrency (the canary's). Every change is conditional on
the row's ETag, so concurrent operators and steps never undo each other's change."""

from __future__ import annotations

import json

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.domain.runs import FATAL_ERRORS, Caller, Control, to_json
from shared.foundation.errors import ErrorInfo
from shared.stores.keys import now_iso


def control_of(row, error: ErrorInfo | None) -> Control:
    return Control(
        cancelled_at=row.get("cancelledAt") or None,
        cancelled_by=Caller.from_dict(json.loads(row["cancelledBy"])) if row.get("cancelledBy") else None,
        pause=json.loads(row["pause"]) if row.get("pause") else None,
        phase=row.get("phase") or "running",
        error=error,
    )


class RunControl:
    _table: TableClient

    def _row(self, run_id: str):
        try:
            return self._table.get_entity(run_id, "run")
        except ResourceNotFoundError:
            return None

    # ---- control ----------------------------------------------------------------------------------

    def control(self, run_id: str) -> Control | None:
        row = self._row(run_id)
        if row is None:
            return None
        error = ErrorInfo(row["errorCode"], row.get("errorMessage", "")) if row.get("errorCode") else None
        return control_of(row, error)

    def _change(self, run_id: str, change) -> bool:
        """Applies `change(row) -> properties or None` to the run row, conditional on its ETag;
        False when `change` declines (nothing to do)."""
        while True:
            row = self._row(run_id)
            if row is None:
                return False
            update = change(row)
            if update is None:
                return False
            try:
                self._table.update_entity(
                    {"PartitionKey": run_id, "RowKey": "run", **update},
                    mode=UpdateMode.MERGE,
                    etag=row.metadata["etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
            except ResourceModifiedError:
                continue
            return True

    def cancel(self, run_id: str, by: Caller) -> bool:
        """Marks the run cancelled; False if it already was."""
        return self._change(
            run_id,
            lambda row: None if row.get("cancelledAt") else {"cancelledAt": now_iso(), "cancelledBy": to_json(by.to_dict())},
        )

    def pause(self, run_id: str, pause: dict, *, end_canary: bool = False) -> bool:
        """Pauses the run (and ends its canary phase, when `end_canary`: once)."""

        def change(row):
            if end_canary and row.get("phase") != "canary":
                return None
            return {"pause": to_json({**pause, "at": now_iso()}), **({"phase": "running"} if end_canary else {})}

        return self._change(run_id, change)

    def end_canary(self, run_id: str) -> bool:
        """The canary passed and the run goes on; True for the one caller that made it so."""
        return self._change(run_id, lambda row: {"phase": "running"} if row.get("phase") == "canary" else None)

    def resume(self, run_id: str, by: Caller) -> bool:
        return self._change(run_id, lambda row: {"pause": "", "resumedBy": to_json(by.to_dict())} if row.get("pause") else None)

    def take_slots(self, run_id: str, name: str, count: int, limit: int) -> int:
        """Takes up to `count` of `limit` slots of the run's counter `name` (gives back -`count`
        when negative), exactly under any concurrency; returns how many it took."""
        while True:
            try:
                row = self._table.get_entity(run_id, name)
            except ResourceNotFoundError:
                row = None
            taken = int(row.get("taken", 0)) if row else 0
            mine = max(-taken, min(count, limit - taken))
            if mine == 0:
                return 0
            entity = {"PartitionKey": run_id, "RowKey": name, "taken": taken + mine}
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

    def slots(self, run_id: str, name: str) -> int:
        try:
            return int(self._table.get_entity(run_id, name).get("taken", 0))
        except ResourceNotFoundError:
            return 0

    def fail_once(self, run_id: str, error: ErrorInfo) -> bool:
        """Fails the run for good unless it already failed so; True for the caller that failed it."""
        update = {"errorCode": error.code, "errorMessage": error.message}
        return self._change(run_id, lambda row: None if row.get("errorCode") in FATAL_ERRORS else update)
