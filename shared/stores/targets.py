"""A run's targets, one row each: pending -> claimed -> outcome, counted per scope.

Each change of a target's outcome is one transaction that updates its row (ETag-checked) and a
counter shard of its partition, so counts are exact under any concurrency; a target is claimed
before its upgrade POST, so that no two batches upgrade it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableTransactionError

from shared.domain.targets import Outcome, Target, counter
from shared.stores.partitions import (
    CHANGED,
    MAX_OPS,
    RUN_PARTITIONS,
    TARGET_ROWS,
    by_partition,
    row_key,
    run_range,
    target_partition,
)
from shared.stores.target_rows import (
    ADMITTED,
    OPEN,
    TargetAdding,
    TargetRow,
    conditional,
    pending_deltas,
    target_row,
)


class TargetStore(TargetAdding):
    """A run's targets: added (TargetAdding), then claimed and decided."""

    def rows_in(self, run_id: str, *, states: tuple[str, ...] = ("pending",)) -> list[TargetRow]:
        """The run's targets in these states (a scan of its target rows: for one-off operations
        such as resuming, cancelling or retrying, never on the hot path)."""
        clause = " or ".join(f"state eq '{s}'" for s in states)
        rows = self._table.query_entities(
            f"{RUN_PARTITIONS} and {TARGET_ROWS} and ({clause})",
            parameters=run_range(run_id),
            select=["scope", "resourceId", "state", "claim", "claimedAt", "admitted", "seq", "recordedBy"],
        )
        return [target_row(Target(r["scope"], r["resourceId"]), r) for r in rows]

    def release(self, run_id: str, rows: list[TargetRow]) -> None:
        """Gives claimed targets back (a paused batch that will not POST them): pending again, for
        whichever batch comes next."""
        for partition, group in by_partition(run_id, rows, lambda r: r.target).items():
            ops = [
                (
                    "update",
                    {"PartitionKey": partition, "RowKey": row_key(r.target), "state": "pending", "claim": ""},
                    conditional(r.etag),
                )
                for r in group
            ]
            for start in range(0, len(ops), MAX_OPS):
                try:
                    self._counters.submit(ops[start : start + MAX_OPS])
                except TableTransactionError as exc:
                    if exc.error_code != CHANGED:
                        raise  # changed meanwhile: decided or claimed by someone else, no longer ours to give

    def admit(self, run_id: str, rows: list[TargetRow]) -> list[TargetRow]:
        """Admits held targets to the current step of the run's plan, counted in the same
        transaction; returns those admitted here (a row that changed meanwhile was decided or
        admitted by someone else)."""
        admitted: list[TargetRow] = []
        for partition, group in by_partition(run_id, rows, lambda r: r.target).items():
            for start in range(0, len(group), MAX_OPS - 1):
                batch = group[start : start + MAX_OPS - 1]
                while batch:
                    entity = {"PartitionKey": partition, "admitted": True}
                    ops = [("update", {**entity, "RowKey": row_key(r.target)}, conditional(r.etag)) for r in batch]
                    try:
                        results = self._counters.commit(partition, ops, {ADMITTED: len(batch)})
                    except TableTransactionError as exc:
                        if exc.error_code != CHANGED or exc.index >= len(batch):
                            raise
                        del batch[exc.index]
                        continue
                    for row, result in zip(batch, results, strict=True):
                        row.etag, row.admitted = result["etag"], True
                    admitted += batch
                    break
        return admitted

    # ---- deciding -----------------------------------------------------------------------------

    def get(self, run_id: str, targets: Iterable[Target]) -> dict[Target, TargetRow]:
        rows: dict[Target, TargetRow] = {}
        for target in targets:
            try:
                row = self._table.get_entity(target_partition(run_id, target), row_key(target))
            except ResourceNotFoundError:
                continue
            rows[target] = target_row(target, row)
        return rows

    def _refresh(self, run_id: str, row: TargetRow) -> TargetRow | None:
        return self.get(run_id, [row.target]).get(row.target)

    def claim(self, run_id: str, rows: list[TargetRow], claim: str) -> list[TargetRow]:
        """Marks targets as being upgraded by `claim`; returns the rows it got (others moved on meanwhile)."""
        got: list[TargetRow] = []
        for partition, group in by_partition(run_id, rows, lambda row: row.target).items():
            got += self._claim_in(partition, run_id, group, claim)
        return got

    def _claim_in(self, partition: str, run_id: str, rows: list[TargetRow], claim: str) -> list[TargetRow]:
        while rows:
            now = datetime.now(UTC)
            ops = [
                (
                    "update",
                    {
                        "PartitionKey": partition,
                        "RowKey": row_key(r.target),
                        "state": "claimed",
                        "claim": claim,
                        "claimedAt": now,
                    },
                    conditional(r.etag),
                )
                for r in rows[:MAX_OPS]
            ]
            try:
                results = self._counters.submit(ops)
            except TableTransactionError as exc:
                if exc.error_code != CHANGED or exc.index >= len(ops):
                    raise
                fresh = self._refresh(run_id, rows[exc.index])
                taken = fresh is not None and fresh.state == "claimed" and fresh.claim != claim and not fresh.stale_claim
                if fresh is None or fresh.state not in OPEN or taken:
                    del rows[exc.index]  # decided, or being upgraded right now by someone else
                else:
                    rows[exc.index] = fresh
                continue
            for row, result in zip(rows, results, strict=False):
                row.etag, row.state, row.claim = result["etag"], "claimed", claim
            return rows
        return []

    def record(
        self, run_id: str, rows: dict[Target, TargetRow], outcomes: list[Outcome], chain: str | None, adopt: str | None = None
    ) -> list[Outcome]:
        """Records final outcomes; returns those recorded here.

        A target whose row changed since it was read is re-read: it is left alone when it has its
        outcome already, or when another batch holds it (see TargetRow.open_to)."""
        recorded: list[Outcome] = []
        known = [o for o in outcomes if o.target in rows]
        for partition, pending in by_partition(run_id, known, lambda o: o.target).items():
            recorded += self._record_in(partition, run_id, rows, pending, chain, adopt)
        return recorded

    def _record_in(
        self,
        partition: str,
        run_id: str,
        rows: dict[Target, TargetRow],
        pending: list[Outcome],
        chain: str | None,
        adopt: str | None,
    ) -> list[Outcome]:
        recorded: list[Outcome] = []
        while pending:
            batch = pending[: (MAX_OPS - 1) // 2]
            token = uuid.uuid4().hex
            ops, owner = self._outcome_ops(partition, rows, batch, token)
            deltas = pending_deltas((o.target for o in batch), -1)
            for o in batch:
                key = counter(o.target.scope, o.outcome)
                deltas[key] = deltas.get(key, 0) + 1
            try:
                self._counters.commit(partition, ops, deltas)
            except TableTransactionError as exc:
                if exc.error_code != CHANGED or exc.index >= len(ops):
                    raise
                o = batch[owner[exc.index]]
                fresh = self._refresh(run_id, rows[o.target])
                if fresh is not None and fresh.recorded_by == token:
                    recorded.extend(batch)  # this very transaction, resent after its answer was lost
                    del pending[: len(batch)]
                elif fresh is None or not fresh.open_to(chain, adopt):
                    pending.remove(o)
                else:
                    rows[o.target] = fresh
                continue
            recorded.extend(batch)
            del pending[: len(batch)]
        return recorded

    @staticmethod
    def _outcome_ops(partition: str, rows: dict[Target, TargetRow], batch: list[Outcome], token: str) -> tuple[list, list[int]]:
        """The row updates (and failure rows) of a batch of outcomes, and which outcome each op belongs to."""
        ops: list = []
        owner: list[int] = []
        for i, o in enumerate(batch):
            entity = {"PartitionKey": partition, "RowKey": row_key(o.target), "state": o.outcome, "recordedBy": token}
            if o.version:
                entity["installedVersion"] = o.version
            failure = {k: v for k, v in (o.failure or {}).items() if v is not None}
            entity.update(failure)
            ops.append(("update", entity, conditional(rows[o.target].etag)))
            owner.append(i)
            if failure:
                identity = {"scope": o.target.scope, "resourceId": o.target.id}
                ops.append(("upsert", {"PartitionKey": partition, "RowKey": row_key(o.target, "f-"), **identity, **failure}))
                owner.append(i)
        return ops, owner
