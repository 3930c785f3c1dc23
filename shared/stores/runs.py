"""Runs in the runs table: the run row, its steps, its stored inputs, and the status document.

Rows of the run partition (PartitionKey = run id):
  run            what was asked and what the start step resolved (app, target version, RSC set, error)
  count-00..15   counter shards (steps and discovery counts)
  step-<id>      discovery steps done, with the messages they emitted
  input-NNNN     target keys given to POST /api/publish (or read from the registry), compressed
The targets live in partitions of their own (see stores.targets and stores.partitions).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from datetime import UTC, datetime

from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from shared.domain.app import TargetApp
from shared.domain.plan import Plan
from shared.domain.runs import FINAL_STATES, RunRecord, RunSpec, to_json
from shared.domain.status import failure_entry, progress_of, status_document
from shared.domain.steering import Caller, Progress
from shared.domain.targets import Target, counter
from shared.foundation.storage import PARTITION_READERS
from shared.stores.counters import Counters, counter_totals
from shared.stores.history import RunHistory
from shared.stores.partitions import (
    COUNTER_ROWS,
    EXISTS,
    FAILURE_ROWS,
    MAX_OPS,
    chunk_keys,
    iso,
    now_iso,
    pack,
    query_partitions,
    target_partitions,
    unpack,
)
from shared.stores.purging import Purging
from shared.stores.run_steering import ADMISSIONS, RunSteering, steering_of

MAX_FAILURES_LISTED = 1000
FINAL_DOCUMENT = "finalDocument"  # the run row's copy of its status document once the run is over


def _utcnow() -> datetime:
    return datetime.now(UTC)


class StepRecord:
    def __init__(self, message_id: str, children: list[str]) -> None:
        self.message_id = message_id
        self.children = children


class RunStore(RunSteering):
    def __init__(
        self,
        table: TableClient,
        counters: Counters,
        *,
        readers: Executor | None = None,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        """`readers` reads a run's partitions at once (the storage account's pool; a pool of its own by default)."""
        self._table = table
        self._counters = counters
        self._readers = readers or ThreadPoolExecutor(PARTITION_READERS, thread_name_prefix="partition-reader")
        self._now = now
        self._history = RunHistory(table)
        self.purging = Purging(table)

    # ---- runs -------------------------------------------------------------------------------------

    def create_run(self, spec: RunSpec) -> None:
        """One transaction: run row, the first counter shard (one step pending: the start), input chunks.

        The other shards are created when first used, which keeps this call fast.
        """
        chunks = chunk_keys([t.key for t in spec.targets or []])
        input_keys = [f"input-{i:04d}" for i in range(len(chunks))]
        created = now_iso()
        self._history.add(spec.run_id, spec.teams_app_id, created)  # first: an entry without a run is skipped
        run = {
            "PartitionKey": spec.run_id,
            "RowKey": "run",
            "teamsAppId": spec.teams_app_id or "",
            "externalId": spec.external_id or "",
            "requestedVersion": spec.version or "",
            "dryRun": spec.dry_run,
            "scopes": ",".join(spec.scopes),
            "inputKeys": ",".join(input_keys),
            "createdAt": created,
            "trigger": spec.trigger,
            "startedBy": to_json(spec.started_by.to_dict()),
            "retryOf": spec.retry_of or "",
            "plan": to_json(spec.plan.stored()) if spec.plan else "",
            "groupId": spec.group_id or "",
        }
        ops = [("create", run), ("create", {"PartitionKey": spec.run_id, "RowKey": "count-00", "stepsPending": 1})]
        for key, chunk in zip(input_keys, chunks, strict=True):
            ops.append(("create", {"PartitionKey": spec.run_id, "RowKey": key, "targets": pack(chunk)}))
        for start in range(0, len(ops), MAX_OPS):
            self._table.submit_transaction(ops[start : start + MAX_OPS])

    def get_run(self, run_id: str) -> RunRecord | None:
        row = self._row(run_id)
        return None if row is None else self._record(run_id, row)

    @staticmethod
    def _record(run_id: str, row: dict) -> RunRecord:
        target = TargetApp.from_json(row["target"]) if row.get("target") else None
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
            discovery=json.loads(row["discovery"]) if row.get("discovery") else {},
            seeding=tuple(s for s in row.get("seeding", "").split(",") if s),
            trigger=row.get("trigger") or "api",
            started_by=Caller.from_dict(json.loads(row["startedBy"])) if row.get("startedBy") else Caller(None, "api"),
            retry_of=row.get("retryOf") or None,
            plan=Plan.from_stored(json.loads(row["plan"])) if row.get("plan") else None,
            group_id=row.get("groupId") or None,
            targets_purged_at=row.get("targetsPurgedAt") or None,
            steering=steering_of(row),
        )

    def set_target(
        self,
        run_id: str,
        target: TargetApp,
        discovery: dict[str, str],
        seeding: tuple[str, ...] = (),
        *,
        created_at: str | None = None,
    ) -> None:
        """Records what the start step resolved; with `created_at`, indexes a run published by
        manifest id under its app too."""
        if created_at:
            self._history.index_app(run_id, target.teams_app_id, created_at)
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

    def history(self, *, app_id: str | None, state: str | None, after: str | None, limit: int) -> tuple[list[dict], str | None]:
        """A page of the run history, newest first (see stores.history)."""
        return self._history.page(
            app_id=app_id, state=state, after=after, limit=limit, live=lambda run_id: self.status(run_id, failures=False)
        )

    def finished(self, before: str) -> list[tuple[str, dict]]:
        """Runs over and last changed before `before`, whose target rows are still kept (see stores.history)."""
        return self._history.finished(before)

    def note_purged(self, key: str, document: dict) -> None:
        self._history.note_purged(key, document)

    def is_going(self, run_id: str) -> bool:
        """The run exists and is not over (a waiting or paused run is going: it holds its app's slot)."""
        status = self.status(run_id, failures=False)
        return status is not None and status["state"] not in FINAL_STATES

    def going(self) -> list[dict]:
        """The status documents (without failures) of every run not over yet."""
        return self._history.going(lambda run_id: self.status(run_id, failures=False))

    def status(self, run_id: str, *, failures: bool = True) -> dict | None:
        """The status document (see domain.status)."""
        read = self._document(run_id)
        if read is None:
            return None
        run, totals, _, document = read
        if run.targets_purged_at:  # the document kept when its target rows were deleted
            document = {**self.purging.document(run_id), "targetsPurgedAt": run.targets_purged_at}
            return document if failures else {k: v for k, v in document.items() if k != "failures"}
        if failures:
            failed = sum(totals.get(counter(scope, "failed"), 0) for scope in run.scopes)
            document["failures"] = self._failures(run_id) if failed else []
        return document

    def progress(self, run_id: str) -> tuple[RunRecord, Progress, dict] | None:
        """The run, the figures its steering goes by, and its status document (without failures)."""
        read = self._document(run_id)
        if read is None:
            return None
        run, totals, slots, document = read
        return run, progress_of(run, totals, slots=slots), document

    def _document(self, run_id: str) -> tuple[RunRecord, dict[str, int], int, dict] | None:
        """The run, its totals, its admitted slots and its status document (without failures). The first read that finds
        the run over writes its document to the run row, conditional on the row as read, and every
        read after returns that one: a cancel or an error recorded after the run ended (a race with its
        last outcome) does not change a final status."""
        while True:
            read = self._read_status(run_id)
            if read is None:
                return None
            run, totals, rows, slots = read
            run_row = next(r for r in rows if r["RowKey"] == "run")
            if run_row.get(FINAL_DOCUMENT):
                return run, totals, slots, json.loads(run_row[FINAL_DOCUMENT])
            updated = iso(max(r.metadata["timestamp"] for r in rows))
            document = status_document(run, totals, None, updated, self._now())
            if document["state"] in FINAL_STATES:
                try:
                    self._table.update_entity(
                        {"PartitionKey": run_id, "RowKey": "run", FINAL_DOCUMENT: to_json(document)},
                        mode=UpdateMode.MERGE,
                        etag=run_row.metadata["etag"],
                        match_condition=MatchConditions.IfNotModified,
                    )
                except ResourceModifiedError:
                    continue  # the run row changed since it was read (a cancel, an error): read it again
            return run, totals, slots, document

    def _read_status(self, run_id: str) -> tuple[RunRecord, dict[str, int], list, int] | None:
        """The run row, the admissions row and the counter shards of each of the run's partitions,
        read with one range query per partition (a query over the run's partition range would read
        every target row on the way)."""
        run_rows = self._table.query_entities(
            f"PartitionKey eq @p and (RowKey eq 'run' or RowKey eq '{ADMISSIONS}' or ({COUNTER_ROWS}))", parameters={"p": run_id}
        )
        rows = list(run_rows)
        run_row = next((r for r in rows if r["RowKey"] == "run"), None)
        if run_row is None:
            return None
        slots = next((int(r.get("taken", 0)) for r in rows if r["RowKey"] == ADMISSIONS), 0)
        rows = [r for r in rows if r["RowKey"] != ADMISSIONS]
        rows += self._each_target_partition(run_id, COUNTER_ROWS)
        totals = counter_totals(r for r in rows if r["RowKey"].startswith("count-"))
        return self._record(run_id, run_row), totals, rows, slots

    def _each_target_partition(self, run_id: str, rows: str, limit: int | None = None) -> list:
        return query_partitions(self._table, self._readers, target_partitions(run_id), rows, limit=limit)

    def _failures(self, run_id: str) -> list[dict]:
        rows = self._each_target_partition(run_id, FAILURE_ROWS, MAX_FAILURES_LISTED)
        failures = []
        for row in sorted(rows, key=lambda r: r["RowKey"])[:MAX_FAILURES_LISTED]:
            target = Target(row["scope"], row["resourceId"])
            failures.append(failure_entry(target, row.get("status"), row.get("code", ""), row.get("message", "")))
        return failures
