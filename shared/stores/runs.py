"""Runs in the runs table: the run row, its steps, its stored inputs, and the status document.

Rows of the run partition (PartitionKey = run id):
  run            what was asked and what the start step resolved (app, target version, RSC set, error)
  count-00..15   counter shards (steps and discovery counts)
  step-<id>      discovery steps done, with the messages they emitted
  input-NNNN     target keys given to POST /api/publish (or read from the registry), compressed
The targets live in partitions of their own (see stores.targets and stores.keys).
"""

from __future__ import annotations

import json

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from shared.domain.app import TargetApp
from shared.domain.runs import RunRecord, RunSpec, failure_entry, status_document
from shared.domain.targets import Target, counter
from shared.foundation.errors import ErrorInfo
from shared.stores.counters import Counters, counter_totals
from shared.stores.keys import (
    COUNTER_ROWS,
    EXISTS,
    FAILURE_ROWS,
    MAX_OPS,
    RUN_PARTITIONS,
    chunk_keys,
    iso,
    now_iso,
    pack,
    run_range,
    unpack,
)

MAX_FAILURES_LISTED = 1000


class StepRecord:
    def __init__(self, message_id: str, children: list[str]) -> None:
        self.message_id = message_id
        self.children = children


class RunStore:
    def __init__(self, table: TableClient, counters: Counters) -> None:
        self._table = table
        self._counters = counters

    # ---- runs -------------------------------------------------------------------------------------

    def create_run(self, spec: RunSpec) -> None:
        """One transaction: run row, the first counter shard (one step pending: the start), input chunks.

        The other shards are created when first used, which keeps this call fast.
        """
        chunks = chunk_keys([t.key for t in spec.targets or []])
        input_keys = [f"input-{i:04d}" for i in range(len(chunks))]
        run = {
            "PartitionKey": spec.run_id,
            "RowKey": "run",
            "teamsAppId": spec.teams_app_id or "",
            "externalId": spec.external_id or "",
            "requestedVersion": spec.version or "",
            "dryRun": spec.dry_run,
            "scopes": ",".join(spec.scopes),
            "inputKeys": ",".join(input_keys),
            "createdAt": now_iso(),
        }
        ops = [("create", run), ("create", {"PartitionKey": spec.run_id, "RowKey": "count-00", "stepsPending": 1})]
        for key, chunk in zip(input_keys, chunks, strict=True):
            ops.append(("create", {"PartitionKey": spec.run_id, "RowKey": key, "targets": pack(chunk)}))
        for start in range(0, len(ops), MAX_OPS):
            self._table.submit_transaction(ops[start : start + MAX_OPS])

    def get_run(self, run_id: str) -> RunRecord | None:
        try:
            row = self._table.get_entity(run_id, "run")
        except ResourceNotFoundError:
            return None
        return self._record(run_id, row)

    @staticmethod
    def _record(run_id: str, row: dict) -> RunRecord:
        target = TargetApp.from_json(row["target"]) if row.get("target") else None
        error = ErrorInfo(row["errorCode"], row.get("errorMessage", "")) if row.get("errorCode") else None
        input_keys = tuple(k for k in row.get("inputKeys", "").split(",") if k)
        return RunRecord(
            run_id=run_id,
            teams_app_id=(target.teams_app_id if target else row.get("teamsAppId")) or None,
            external_id=row.get("externalId") or None,
            requested_version=row.get("requestedVersion") or None,
            dry_run=bool(row.get("dryRun")),
            scopes=tuple(s for s in row.get("scopes", "chat").split(",") if s),
            input_keys=input_keys,
            created_at=row.get("createdAt", ""),
            target=target,
            error=error,
            discovery=json.loads(row["discovery"]) if row.get("discovery") else {},
            seeding=tuple(s for s in row.get("seeding", "").split(",") if s),
        )

    def set_target(self, run_id: str, target: TargetApp, discovery: dict[str, str], seeding: tuple[str, ...] = ()) -> None:
        self._table.update_entity(
            {
                "PartitionKey": run_id,
                "RowKey": "run",
                "target": target.to_json(),
                "teamsAppId": target.teams_app_id,
                "discovery": json.dumps(discovery, separators=(",", ":")),
                "seeding": ",".join(seeding),
            },
            mode=UpdateMode.MERGE,
        )

    def fail_run(self, run_id: str, error: ErrorInfo) -> None:
        self._table.update_entity(
            {"PartitionKey": run_id, "RowKey": "run", "errorCode": error.code, "errorMessage": error.message},
            mode=UpdateMode.MERGE,
        )

    # ---- inputs -----------------------------------------------------------------------------------

    def add_inputs(self, run_id: str, targets: list[Target], prefix: str) -> list[str]:
        """Stores targets for LoadTargets steps (the registry's); returns the row keys."""
        keys = []
        for i, chunk in enumerate(chunk_keys([t.key for t in targets])):
            key = f"input-{prefix}{i:04d}"
            self._table.upsert_entity({"PartitionKey": run_id, "RowKey": key, "targets": pack(chunk)})
            keys.append(key)
        return keys

    def load_input(self, run_id: str, input_key: str) -> list[Target]:
        return [Target.parse(key) for key in unpack(self._table.get_entity(run_id, input_key).get("targets"))]

    # ---- steps ------------------------------------------------------------------------------------

    def get_step(self, run_id: str, step_id: str) -> StepRecord | None:
        try:
            row = self._table.get_entity(run_id, f"step-{step_id}")
        except ResourceNotFoundError:
            return None
        return StepRecord(row.get("messageId", ""), unpack(row.get("children")))

    def complete_step(self, run_id: str, step_id: str, message_id: str, children: list[str], **deltas: int) -> StepRecord | None:
        """Marks a step done and counts its children as pending steps; None if another message did it."""
        row = {
            "PartitionKey": run_id,
            "RowKey": f"step-{step_id}",
            "messageId": message_id,
            "children": pack(children),
            "doneAt": now_iso(),
        }
        try:
            self._counters.commit(run_id, [("create", row)], {"stepsPending": len(children) - 1, **deltas})
        except TableTransactionError as exc:
            if exc.error_code != EXISTS:
                raise
            done = self.get_step(run_id, step_id)
            # ours when this very message wrote it: a resent transaction whose first answer was lost
            return done if done is not None and done.message_id == message_id else None
        return StepRecord(message_id, children)

    # ---- status -----------------------------------------------------------------------------------

    def status(self, run_id: str) -> dict | None:
        rows = list(
            self._table.query_entities(
                f"{RUN_PARTITIONS} and (RowKey eq 'run' or ({COUNTER_ROWS}))", parameters=run_range(run_id)
            )
        )
        run_row = next((r for r in rows if r["RowKey"] == "run"), None)
        if run_row is None:
            return None
        run = self._record(run_id, run_row)
        totals = counter_totals(r for r in rows if r["RowKey"].startswith("count-"))
        failed = sum(totals.get(counter(scope, "failed"), 0) for scope in run.scopes)
        failures = self._failures(run_id) if failed else []
        updated = iso(max(r.metadata["timestamp"] for r in rows))
        return status_document(run, totals, failures, updated)

    def _failures(self, run_id: str) -> list[dict]:
        rows = self._table.query_entities(
            f"{RUN_PARTITIONS} and {FAILURE_ROWS}", parameters=run_range(run_id), results_per_page=MAX_FAILURES_LISTED
        )
        failures = []
        for row in rows:
            target = Target(row["scope"], row["resourceId"])
            failures.append(failure_entry(target, row.get("status"), row.get("code", ""), row.get("message", "")))
            if len(failures) >= MAX_FAILURES_LISTED:
                break
        return failures
