"""A run's targets, one row each: pending -> claimed -> outcome, counted per scope.

Each change of a target's outcome is one transaction that updates its row (ETag-checked) and a
counter shard of its partition, so counts are exact under any concurrency; a target is claimed
before its upgrade POST, so that no two batches upgrade it.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from shared.domain.targets import Outcome, Target, counter
from shared.stores.counters import Counters
from shared.stores.keys import (
    CHANGED,
    EXISTS,
    MAX_OPS,
    RUN_PARTITIONS,
    TARGET_ROWS,
    by_partition,
    partition_batches,
    row_key,
    run_range,
    target_partition,
)

STALE_CLAIM = timedelta(minutes=15)  # longer than any invocation: the claimer is gone
OPEN = ("pending", "claimed")


def _conditional(etag: str) -> dict:
    return {"mode": UpdateMode.MERGE, "etag": etag, "match_condition": MatchConditions.IfNotModified}


def _pending(targets: Iterable[Target], sign: int = 1) -> dict[str, int]:
    return {counter(scope, "pending"): sign * n for scope, n in Counter(t.scope for t in targets).items()}


@dataclass
class TargetRow:
    target: Target
    state: str
    etag: str
    claim: str | None = None  # "<chain>:<attempt>": chain is the id of the batch's first message
    claimed_at: datetime | None = None
    recorded_by: str | None = None  # the transaction that wrote the outcome

    @property
    def stale_claim(self) -> bool:
        return self.claimed_at is None or datetime.now(UTC) - self.claimed_at > STALE_CLAIM

    @property
    def chain(self) -> str | None:
        return self.claim.split(":")[0] if self.claim else None

    def open_to(self, chain: str | None, adopt: str | None = None) -> bool:
        """Whether a batch of this chain may decide the target: it is pending, or claimed by an
        earlier attempt of the same batch, by a chain starting with `adopt` (dead attempts the
        batch takes over), or by an attempt that died long ago. `None` (the poison-queue handler,
        the last resort) may decide any target without an outcome."""
        if self.state == "pending":
            return True
        if self.state != "claimed":
            return False
        if chain is None or self.chain == chain or (adopt and self.chain and self.chain.startswith(adopt)):
            return True
        return self.stale_claim


class TargetStore:
    def __init__(self, table: TableClient, counters: Counters) -> None:
        self._table = table
        self._counters = counters
        self._known: dict[str, set[Target]] = {}  # per run: targets this process already saw added
        self._lock = threading.Lock()

    # ---- adding -------------------------------------------------------------------------------

    def add(
        self, run_id: str, targets: Iterable[Target], source: str, *, each: Callable[[dict[Target, str]], None] | None = None
    ) -> dict[Target, str]:
        """Records targets as pending; returns those that were new (each target once per run), with
        the ETags of their rows. `each`, if given, is called with the new targets of each
        transaction as soon as it is committed (so that they can be queued at once).

        Usually one transaction per 99 targets creates the rows and counts them. When some already
        exist (a group chat listed under several members, a redelivered step), the rows of that
        batch are created one by one (a duplicate is a cheap 409) and the new ones counted in a
        second transaction. A step that dies in between leaves uncounted rows, which
        `pending_from` finds and counts when the step is redelivered.
        """
        with self._lock:
            known = self._known.setdefault(run_id, set())
            while len(self._known) > 8:
                del self._known[next(iter(self._known))]
        fresh = [t for t in dict.fromkeys(targets) if t not in known]
        added: dict[Target, str] = {}
        for partition, batch in partition_batches(run_id, fresh, MAX_OPS - 1, lambda t: t):
            new = self._add_batch(run_id, partition, batch, source)
            with self._lock:
                known.update(batch)
            added.update(new)
            if each is not None and new:
                each(new)
        return added

    def _add_batch(self, run_id: str, partition: str, batch: list[Target], source: str) -> dict[Target, str]:
        rows = [self._row(run_id, t, source, counted=True) for t in batch]
        try:
            results = self._counters.commit(partition, [("create", row) for row in rows], _pending(batch))
        except TableTransactionError as exc:
            if exc.error_code != EXISTS:
                raise
            return self._add_one_by_one(run_id, batch, source)
        return {t: r["etag"] for t, r in zip(batch, results, strict=True)}

    @staticmethod
    def _row(run_id: str, target: Target, source: str, *, counted: bool) -> dict:
        return {
            "PartitionKey": target_partition(run_id, target),
            "RowKey": row_key(target),
            "scope": target.scope,
            "resourceId": target.id,
            "state": "pending",
            "source": source,
            "counted": counted,
        }

    def _add_one_by_one(self, run_id: str, targets: list[Target], source: str) -> dict[Target, str]:
        created: list[tuple[Target, str]] = []
        ours: dict[Target, str] = {}
        for target in targets:
            try:
                result = self._table.create_entity(self._row(run_id, target, source, counted=False))
            except ResourceExistsError:
                row = self._table.get_entity(target_partition(run_id, target), row_key(target))
                if row.get("source") != source or row.get("state") != "pending":
                    continue  # another step's target (a group chat seen through another member)
                if row.get("counted") is False:
                    created.append((target, row.metadata["etag"]))
                else:  # our own batch, committed by an attempt whose answer was lost
                    ours[target] = row.metadata["etag"]
                continue
            created.append((target, result["etag"]))
        return {**ours, **self._count(run_id, created)}

    def _count(self, run_id: str, rows: list[tuple[Target, str]]) -> dict[Target, str]:
        """Marks uncounted rows counted and adds them to `pending`; returns their new ETags."""
        counted: dict[Target, str] = {}
        for partition, batch in partition_batches(run_id, rows, MAX_OPS - 1, lambda row: row[0]):
            while batch:
                ops = [
                    ("update", {"PartitionKey": partition, "RowKey": row_key(t), "counted": True}, _conditional(etag))
                    for t, etag in batch
                ]
                try:
                    results = self._counters.commit(partition, ops, _pending(t for t, _ in batch))
                except TableTransactionError as exc:
                    if exc.error_code != CHANGED or exc.index >= len(batch):
                        raise
                    target = batch[exc.index][0]  # counted meanwhile by a redelivered copy of the step
                    row = self._table.get_entity(partition, row_key(target))
                    if row.get("counted", True):
                        del batch[exc.index]
                    else:
                        batch[exc.index] = (target, row.metadata["etag"])
                    continue
                counted.update((t, r["etag"]) for (t, _), r in zip(batch, results, strict=True))
                break
        return counted

    def pending_from(self, run_id: str, source: str) -> list[TargetRow]:
        """Rows a step added that have no outcome yet, counted (for a step that is redelivered)."""
        rows = list(
            self._table.query_entities(
                f"{RUN_PARTITIONS} and {TARGET_ROWS} and source eq @source and (state eq 'pending' or state eq 'claimed')",
                parameters={**run_range(run_id), "source": source},
                select=["scope", "resourceId", "counted", "state", "claim", "claimedAt"],
            )
        )
        found = [
            TargetRow(Target(r["scope"], r["resourceId"]), r["state"], r.metadata["etag"], r.get("claim"), r.get("claimedAt"))
            for r in rows
        ]
        counted = self._count(
            run_id, [(row.target, row.etag) for row, r in zip(found, rows, strict=True) if r.get("counted") is False]
        )
        for row in found:
            row.etag = counted.get(row.target, row.etag)
        return found

    # ---- deciding -----------------------------------------------------------------------------

    def get(self, run_id: str, targets: Iterable[Target]) -> dict[Target, TargetRow]:
        rows: dict[Target, TargetRow] = {}
        for target in targets:
            try:
                row = self._table.get_entity(target_partition(run_id, target), row_key(target))
            except ResourceNotFoundError:
                continue
            rows[target] = TargetRow(
                target, row["state"], row.metadata["etag"], row.get("claim"), row.get("claimedAt"), row.get("recordedBy")
            )
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
                    _conditional(r.etag),
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
            deltas = _pending((o.target for o in batch), -1)
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
            ops.append(("update", entity, _conditional(rows[o.target].etag)))
            owner.append(i)
            if failure:
                identity = {"scope": o.target.scope, "resourceId": o.target.id}
                ops.append(("upsert", {"PartitionKey": partition, "RowKey": row_key(o.target, "f-"), **identity, **failure}))
                owner.append(i)
        return ops, owner
