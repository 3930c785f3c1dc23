"""A run's target rows, and adding targets to a run: each once, counted in the same transaction
as its row (see stores.targets for what happens to them next)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from shared.domain.targets import Target, counter
from shared.stores.counters import Counters
from shared.stores.partitions import (
    CHANGED,
    EXISTS,
    MAX_OPS,
    RUN_PARTITIONS,
    TARGET_ROWS,
    partition_batches,
    row_key,
    run_range,
    target_partition,
)

STALE_CLAIM = timedelta(minutes=15)  # longer than any invocation: the claimer is gone
OPEN = ("pending", "claimed")
ADMITTED = "admitted"  # counter: targets admitted to the steps of the run's plan (see domain.steering)


def conditional(etag: str) -> dict:
    return {"mode": UpdateMode.MERGE, "etag": etag, "match_condition": MatchConditions.IfNotModified}


def target_row(target: Target, row) -> TargetRow:
    return TargetRow(
        target,
        row["state"],
        row.metadata["etag"],
        row.get("claim"),
        row.get("claimedAt"),
        row.get("recordedBy"),
        bool(row.get("admitted")),
        row.get("seq") or 0,
    )


def pending_deltas(targets: Iterable[Target], sign: int = 1) -> dict[str, int]:
    return {counter(scope, "pending"): sign * n for scope, n in Counter(t.scope for t in targets).items()}


@dataclass
class TargetRow:
    target: Target
    state: str
    etag: str
    claim: str | None = None  # "<chain>:<attempt>": chain is the id of the batch's first message
    claimed_at: datetime | None = None
    recorded_by: str | None = None  # the transaction that wrote the outcome
    admitted: bool = False  # admitted to a step of the run's plan
    seq: float = 0  # the target's place in the run's order: the ids as given, or as found

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


class TargetAdding:
    """Adding targets to a run: each once, counted in the same transaction as its row."""

    def __init__(self, table: TableClient, counters: Counters) -> None:
        self._table = table
        self._counters = counters
        self._known: dict[str, set[Target]] = {}  # per run: targets this process already saw added
        self._lock = threading.Lock()

    def add(
        self,
        run_id: str,
        targets: Iterable[Target],
        source: str,
        *,
        each: Callable[[dict[Target, str]], None] | None = None,
        admitted: bool = False,
        order: Mapping[Target, int] | None = None,
    ) -> dict[Target, str]:
        """Records targets as pending; returns those that were new (each target once per run), with
        the ETags of their rows. `each`, if given, is called with the new targets of each
        transaction as soon as it is committed (so that they can be queued at once). `admitted`:
        they are admitted to the current step of the run's plan. `order`: their places in the run's
        order (the ids as given); by default, when they were found.

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
        unique = list(dict.fromkeys(targets))
        found_at = time.time_ns() // 1000  # found later, placed later
        seq = dict(order) if order is not None else {t: found_at + i for i, t in enumerate(unique)}
        fresh = [t for t in unique if t not in known]
        added: dict[Target, str] = {}
        for partition, batch in partition_batches(run_id, fresh, MAX_OPS - 1, lambda t: t):
            new = self._add_batch(run_id, partition, batch, source, admitted, seq)
            with self._lock:
                known.update(batch)
            added.update(new)
            if each is not None and new:
                each(new)
        return added

    def _add_batch(
        self, run_id: str, partition: str, batch: list[Target], source: str, admitted: bool, seq: dict[Target, int]
    ) -> dict[Target, str]:
        rows = [{**self._row(run_id, t, source, counted=True), "admitted": admitted, "seq": float(seq[t])} for t in batch]
        deltas = pending_deltas(batch) | ({ADMITTED: len(batch)} if admitted else {})
        try:
            results = self._counters.commit(partition, [("create", row) for row in rows], deltas)
        except TableTransactionError as exc:
            if exc.error_code != EXISTS:
                raise
            return self._add_one_by_one(run_id, batch, source, admitted, seq)
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

    def _add_one_by_one(
        self, run_id: str, targets: list[Target], source: str, admitted: bool, seq: dict[Target, int]
    ) -> dict[Target, str]:
        created: list[tuple[Target, str]] = []
        ours: dict[Target, str] = {}
        flagged: set[Target] = set()
        for target in targets:
            row = {**self._row(run_id, target, source, counted=False), "admitted": admitted, "seq": float(seq[target])}
            try:
                result = self._table.create_entity(row)
            except ResourceExistsError:
                row = self._table.get_entity(target_partition(run_id, target), row_key(target))
                if row.get("source") != source or row.get("state") != "pending":
                    continue  # another step's target (a group chat seen through another member)
                if row.get("counted") is False:
                    created.append((target, row.metadata["etag"]))
                    if row.get("admitted"):
                        flagged.add(target)
                else:  # our own batch, committed by an attempt whose answer was lost
                    ours[target] = row.metadata["etag"]
                continue
            created.append((target, result["etag"]))
            if admitted:
                flagged.add(target)
        return {**ours, **self._count(run_id, created, flagged)}

    def _count(self, run_id: str, rows: list[tuple[Target, str]], admitted: set[Target] | None = None) -> dict[Target, str]:
        """Marks uncounted rows counted and adds them to `pending` (and the `admitted` ones to the
        targets admitted to the plan's steps); returns their new ETags."""
        counted: dict[Target, str] = {}
        for partition, batch in partition_batches(run_id, rows, MAX_OPS - 1, lambda row: row[0]):
            while batch:
                ops = [
                    ("update", {"PartitionKey": partition, "RowKey": row_key(t), "counted": True}, conditional(etag))
                    for t, etag in batch
                ]
                deltas = pending_deltas(t for t, _ in batch)
                flagged = sum(1 for t, _ in batch if admitted and t in admitted)
                try:
                    results = self._counters.commit(partition, ops, deltas | ({ADMITTED: flagged} if flagged else {}))
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
                select=["scope", "resourceId", "counted", "state", "claim", "claimedAt", "admitted", "seq"],
            )
        )
        found = [target_row(Target(r["scope"], r["resourceId"]), r) for r in rows]
        uncounted = [(row, r) for row, r in zip(found, rows, strict=True) if r.get("counted") is False]
        counted = self._count(
            run_id, [(row.target, row.etag) for row, _ in uncounted], {row.target for row, _ in uncounted if row.admitted}
        )
        for row in found:
            row.etag = counted.get(row.target, row.etag)
        return found
