"""Run state in one storage table: a run partition, and the run's chats spread over chat partitions.

Rows of the run partition (PartitionKey = run id):
  run            what was asked and what the start step resolved (app, target version, RSC set, error)
  count-00..15   counter shards (steps and discovery counts)
  step-<id>      discovery steps done, with the messages they emitted
  input-NNNN     chat ids given to POST /api/publish, compressed

Rows of a chat partition (PartitionKey = run id + "-NN", NN from a hash of the chat id):
  chat-<id>      one row per targeted chat: state pending -> claimed -> outcome
  fail-<id>      failure details, written with the outcome
  count-00..15   counter shards of these chats; each change of a chat's outcome is one transaction
                 that updates the chat row (ETag-checked) and one shard, so counts are exact under
                 any concurrency

Spreading the chats keeps every partition small: a point write costs the store a look-up within
its partition, and one partition per run would make every claim and record slower as the run grows
(and would concentrate a large run's writes on one partition server).
"""

from __future__ import annotations

import json
import random
import threading
import uuid
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from shared.catalog import TargetApp
from shared.errors import ErrorInfo

SHARDS = 16
CHAT_PARTITIONS = 32
MAX_OPS = 100  # per table transaction
CHANGED = "UpdateConditionNotSatisfied"  # an ETag-conditional write found the entity changed
OUTCOMES = ("upgraded", "wouldUpgrade", "alreadyCurrent", "notInstalled", "failed")
COUNTS = (*OUTCOMES, "pending")
DISCOVERY_COUNTS = ("usersScanned", "usersSkipped", "usersFailed")
MAX_FAILURES_LISTED = 1000
STALE_CLAIM = timedelta(minutes=15)  # longer than any invocation: the claimer is gone
# run errors that stop the run; after any other (discoveryIncomplete) the chats found are still processed
FATAL_ERRORS = {"appNotFound", "appAmbiguous", "versionNotPublished", "catalogError", "startFailed", "runInProgress"}
# The SDK does not resend a POST whose answer was lost (the connection died under it). Our
# transactions may be resent: each holds an ETag-conditional or create operation, so a resent
# transaction that had gone through fails on it, and the callers re-read what they find changed.
REPLAYABLE_METHODS = frozenset({"HEAD", "GET", "PUT", "DELETE", "OPTIONS", "TRACE", "POST"})
INPUT_CHUNK_BYTES = 60_000  # raw; stays under the 64 KiB binary property limit once compressed


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _pack(values: list[str]) -> bytes:
    return zlib.compress(json.dumps(values, separators=(",", ":")).encode())


def _unpack(blob: bytes | None) -> list[str]:
    return json.loads(zlib.decompress(blob)) if blob else []


def chat_partition(run_id: str, chat_id: str) -> str:
    return f"{run_id}-{zlib.crc32(chat_id.encode()) % CHAT_PARTITIONS:02d}"


def by_partition(run_id: str, items: Iterable, chat_id=lambda item: item) -> dict[str, list]:
    """Groups items by the chat partition of their chat, keeping their order within each group."""
    groups: dict[str, list] = {}
    for item in items:
        groups.setdefault(chat_partition(run_id, chat_id(item)), []).append(item)
    return groups


def partition_batches(run_id: str, items: Iterable, size: int, chat_id=lambda item: item) -> Iterator[tuple[str, list]]:
    """Items by chat partition, in batches of at most `size`: one table transaction each."""
    for partition, group in by_partition(run_id, items, chat_id).items():
        for start in range(0, len(group), size):
            yield partition, group[start : start + size]


RUN_PARTITIONS = "PartitionKey ge @run and PartitionKey lt @end"  # with _run_range(run_id)


def _run_range(run_id: str) -> dict[str, str]:
    """Parameters for RUN_PARTITIONS: the run partition and its chat partitions ("<run>-NN"); run ids
    are 32 hex digits, so no other run's partition falls inside."""
    return {"run": run_id, "end": run_id + "."}


def chat_key(chat_id: str, prefix: str = "chat-") -> str:
    """RowKeys may not hold / \\ # ? or control characters; percent-encode all but the usual."""
    return prefix + quote(chat_id, safe=":@._-")


def chunk_chat_ids(chat_ids: list[str]) -> list[list[str]]:
    chunks: list[list[str]] = [[]]
    size = 0
    for chat_id in chat_ids:
        if chunks[-1] and size + len(chat_id) + 4 > INPUT_CHUNK_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(chat_id)
        size += len(chat_id) + 4
    return [c for c in chunks if c]


@dataclass(frozen=True, kw_only=True)
class RunSpec:
    """What POST /api/publish asked for."""

    run_id: str
    teams_app_id: str | None
    external_id: str | None
    version: str | None
    dry_run: bool
    chat_ids: list[str] | None = None


@dataclass(frozen=True, kw_only=True)
class RunRecord:
    run_id: str
    teams_app_id: str | None
    external_id: str | None
    requested_version: str | None
    dry_run: bool
    input_keys: tuple[str, ...]
    created_at: str
    target: TargetApp | None
    error: ErrorInfo | None
    discovery_mode: str = "scan"

    @property
    def explicit_chats(self) -> bool:
        return bool(self.input_keys)


@dataclass
class ChatRow:
    chat_id: str
    state: str
    etag: str
    claim: str | None = None  # "<chain>:<attempt>": chain is the id of the batch's first message
    claimed_at: datetime | None = None
    recorded_by: str | None = None  # the transaction that wrote the outcome

    @property
    def stale_claim(self) -> bool:
        return self.claimed_at is None or datetime.now(UTC) - self.claimed_at > STALE_CLAIM

    def open_to(self, chain: str | None) -> bool:
        """Whether a batch of this chain may decide the chat: it is pending, or claimed by an earlier
        attempt of the same batch, or by an attempt that died long ago. `None` (the poison-queue
        handler, the last resort) may decide any chat without an outcome."""
        if self.state == "pending":
            return True
        if self.state != "claimed":
            return False
        if chain is None or (self.claim and self.claim.split(":")[0] == chain):
            return True
        return self.stale_claim


@dataclass(frozen=True)
class Outcome:
    chat_id: str
    outcome: str  # one of OUTCOMES
    failure: dict | None = None  # {"status", "code", "message"} when outcome == "failed"
    version: str | None = None  # installed version seen


@dataclass
class StepRecord:
    message_id: str
    children: list[str] = field(default_factory=list)


class RunStore:
    def __init__(self, table: TableClient, *, shards: int = SHARDS) -> None:
        self._table = table
        self._shards = shards
        self._shard_cache: dict[tuple[str, str], tuple[dict, str]] = {}
        # each process writes one shard while nobody else does, so its cached ETag stays valid
        self._home_shard = random.randrange(shards)
        self._known_targets: dict[str, set[str]] = {}  # per run: chats this process already saw as targets
        self._lock = threading.Lock()

    # ---- runs -------------------------------------------------------------------------------------

    def add_inputs(self, run_id: str, chat_ids: list[str], prefix: str) -> list[str]:
        """Stores a list of chats for LoadTargets steps (the registry's chats); returns the row keys."""
        keys = []
        for i, chunk in enumerate(chunk_chat_ids(chat_ids)):
            key = f"input-{prefix}{i:04d}"
            self._table.upsert_entity({"PartitionKey": run_id, "RowKey": key, "chatIds": _pack(chunk)})
            keys.append(key)
        return keys

    def create_run(self, spec: RunSpec) -> None:
        """One transaction: run row, the first counter shard (one step pending: the start), input chunks.

        The other shards are created when first used, which keeps this call fast.
        """
        chunks = chunk_chat_ids(spec.chat_ids or [])
        input_keys = [f"input-{i:04d}" for i in range(len(chunks))]
        run = {
            "PartitionKey": spec.run_id,
            "RowKey": "run",
            "teamsAppId": spec.teams_app_id or "",
            "externalId": spec.external_id or "",
            "requestedVersion": spec.version or "",
            "dryRun": spec.dry_run,
            "inputKeys": ",".join(input_keys),
            "createdAt": now_iso(),
        }
        ops = [("create", run), ("create", {"PartitionKey": spec.run_id, "RowKey": "count-00", "stepsPending": 1})]
        for key, chunk in zip(input_keys, chunks, strict=True):
            ops.append(("create", {"PartitionKey": spec.run_id, "RowKey": key, "chatIds": _pack(chunk)}))
        for start in range(0, len(ops), MAX_OPS):
            self._table.submit_transaction(ops[start : start + MAX_OPS])

    def get_run(self, run_id: str) -> RunRecord | None:
        try:
            row = self._table.get_entity(run_id, "run")
        except ResourceNotFoundError:
            return None
        return self._run_record(run_id, row)

    @staticmethod
    def _run_record(run_id: str, row: dict) -> RunRecord:
        target = TargetApp.from_json(row["target"]) if row.get("target") else None
        error = ErrorInfo(row["errorCode"], row.get("errorMessage", "")) if row.get("errorCode") else None
        return RunRecord(
            run_id=run_id,
            teams_app_id=(target.teams_app_id if target else row.get("teamsAppId")) or None,
            external_id=row.get("externalId") or None,
            requested_version=row.get("requestedVersion") or None,
            dry_run=bool(row.get("dryRun")),
            input_keys=tuple(k for k in row.get("inputKeys", "").split(",") if k),
            created_at=row.get("createdAt", ""),
            target=target,
            error=error,
            discovery_mode=row.get("discoveryMode") or ("chatIds" if row.get("inputKeys") else "scan"),
        )

    def set_target(self, run_id: str, target: TargetApp, discovery_mode: str) -> None:
        self._table.update_entity(
            {
                "PartitionKey": run_id,
                "RowKey": "run",
                "target": target.to_json(),
                "teamsAppId": target.teams_app_id,
                "discoveryMode": discovery_mode,
            },
            mode=UpdateMode.MERGE,
        )

    def fail_run(self, run_id: str, error: ErrorInfo) -> None:
        self._table.update_entity(
            {"PartitionKey": run_id, "RowKey": "run", "errorCode": error.code, "errorMessage": error.message},
            mode=UpdateMode.MERGE,
        )

    def load_input(self, run_id: str, input_key: str) -> list[str]:
        return _unpack(self._table.get_entity(run_id, input_key).get("chatIds"))

    # ---- counters ---------------------------------------------------------------------------------

    def _commit(self, partition: str, ops: list, deltas: dict[str, int]) -> list[dict]:
        """Submits `ops` (rows of `partition`) together with `deltas` added to one of its counter
        shards, atomically.

        A shard not seen yet is assumed new and created without reading it first (most are: each
        process writes its own shard of each partition); if it exists, it is read and updated. A
        shard changed (412) or created (409) by someone else meanwhile is retried on another shard;
        an error on one of `ops` is raised to the caller with its index.
        """
        deltas = {k: v for k, v in deltas.items() if v}
        if not deltas:
            return self._submit(ops) if ops else []
        while True:
            shard = f"count-{self._home_shard:02d}"
            with self._lock:
                cached = self._shard_cache.get((partition, shard))
            values, etag = cached if cached else ({}, None)
            merged = {k: int(values.get(k, 0)) + v for k, v in deltas.items()}
            update = {"PartitionKey": partition, "RowKey": shard, **merged}
            if etag is None:
                shard_op: tuple = ("create", update)
            else:
                options = {"mode": UpdateMode.MERGE, "etag": etag, "match_condition": MatchConditions.IfNotModified}
                shard_op = ("update", update, options)
            try:
                results = self._submit([*ops, shard_op])
            except TableTransactionError as exc:
                with self._lock:
                    self._shard_cache.pop((partition, shard), None)
                if exc.index != len(ops) or exc.error_code not in (CHANGED, "EntityAlreadyExists"):
                    raise
                if cached is None:  # it existed: update what it holds
                    with self._lock:
                        self._shard_cache[(partition, shard)] = self._read_shard(partition, shard)
                else:
                    self._home_shard = random.randrange(self._shards)  # someone else writes it: move
                continue
            with self._lock:
                self._shard_cache[(partition, shard)] = ({**values, **merged}, results[-1]["etag"])
                while len(self._shard_cache) > 4 * (CHAT_PARTITIONS + 1):  # a few runs' worth
                    del self._shard_cache[next(iter(self._shard_cache))]
            return results[:-1]

    def _submit(self, ops: list) -> list[dict]:
        """A transaction that callers handle as replayable (see REPLAYABLE_METHODS)."""
        return self._table.submit_transaction(ops, retry_on_methods=REPLAYABLE_METHODS)

    def _read_shard(self, partition: str, shard: str) -> tuple[dict, str | None]:
        try:
            row = self._table.get_entity(partition, shard)
        except ResourceNotFoundError:
            return {}, None  # not used yet: the commit creates it
        return dict(row), row.metadata["etag"]

    # ---- chats ------------------------------------------------------------------------------------

    def add_targets(self, run_id: str, chat_ids: Iterable[str], source: str) -> dict[str, str]:
        """Records chats as pending targets of the run; returns those that were new (each chat once),
        with the ETags of their rows.

        Usually one transaction per 99 chats creates the rows and counts them. When some already
        exist (a group chat listed under several members, a redelivered step), the rows of that
        batch are created one by one (a duplicate is a cheap 409) and the new ones counted in a
        second transaction. A step that dies in between leaves uncounted rows, which
        `pending_from` finds and counts when the step is redelivered.
        """
        with self._lock:
            known = self._known_targets.setdefault(run_id, set())
            while len(self._known_targets) > 8:
                del self._known_targets[next(iter(self._known_targets))]
        fresh = [c for c in dict.fromkeys(chat_ids) if c not in known]
        added: dict[str, str] = {}
        for partition, batch in partition_batches(run_id, fresh, MAX_OPS - 1):
            rows = [self._target_row(run_id, c, source, counted=True) for c in batch]
            try:
                results = self._commit(partition, [("create", row) for row in rows], {"pending": len(batch)})
                added.update((c, r["etag"]) for c, r in zip(batch, results, strict=True))
            except TableTransactionError as exc:
                if exc.error_code != "EntityAlreadyExists":
                    raise
                added.update(self._add_one_by_one(run_id, batch, source))
            known.update(batch)
        return added

    @staticmethod
    def _target_row(run_id: str, chat_id: str, source: str, *, counted: bool) -> dict:
        return {
            "PartitionKey": chat_partition(run_id, chat_id),
            "RowKey": chat_key(chat_id),
            "chatId": chat_id,
            "state": "pending",
            "source": source,
            "counted": counted,
        }

    def _add_one_by_one(self, run_id: str, chat_ids: list[str], source: str) -> dict[str, str]:
        created: list[tuple[str, str]] = []
        ours: dict[str, str] = {}
        for chat_id in chat_ids:
            try:
                result = self._table.create_entity(self._target_row(run_id, chat_id, source, counted=False))
            except ResourceExistsError:
                row = self._table.get_entity(chat_partition(run_id, chat_id), chat_key(chat_id))
                if row.get("source") != source or row.get("state") != "pending":
                    continue  # another step's target (a group chat seen through another member)
                if row.get("counted") is False:
                    created.append((chat_id, row.metadata["etag"]))
                else:  # our own batch, committed by an attempt whose answer was lost
                    ours[chat_id] = row.metadata["etag"]
                continue
            created.append((chat_id, result["etag"]))
        return {**ours, **self._count_targets(run_id, created)}

    def _count_targets(self, run_id: str, rows: list[tuple[str, str]]) -> dict[str, str]:
        """Marks uncounted rows counted and adds them to `pending`; returns their new ETags."""
        counted: dict[str, str] = {}
        for partition, batch in partition_batches(run_id, rows, MAX_OPS - 1, lambda row: row[0]):
            while batch:
                ops = [
                    (
                        "update",
                        {"PartitionKey": partition, "RowKey": chat_key(chat_id), "counted": True},
                        {"mode": UpdateMode.MERGE, "etag": etag, "match_condition": MatchConditions.IfNotModified},
                    )
                    for chat_id, etag in batch
                ]
                try:
                    results = self._commit(partition, ops, {"pending": len(batch)})
                except TableTransactionError as exc:
                    if exc.error_code != CHANGED or exc.index >= len(batch):
                        raise
                    chat_id = batch[exc.index][0]  # counted meanwhile by a redelivered copy of the step
                    row = self._table.get_entity(partition, chat_key(chat_id))
                    if row.get("counted", True):
                        del batch[exc.index]
                    else:
                        batch[exc.index] = (chat_id, row.metadata["etag"])
                    continue
                counted.update((c, r["etag"]) for (c, _), r in zip(batch, results, strict=True))
                break
        return counted

    def pending_from(self, run_id: str, source: str) -> list[str]:
        """Chats a step added that have no outcome yet, counted (for a step that is redelivered)."""
        rows = list(
            self._table.query_entities(
                f"{RUN_PARTITIONS} and RowKey ge 'chat-' and RowKey lt 'chat.' and source eq @source "
                "and (state eq 'pending' or state eq 'claimed')",
                parameters={**_run_range(run_id), "source": source},
                select=["chatId", "counted"],
            )
        )
        self._count_targets(run_id, [(r["chatId"], r.metadata["etag"]) for r in rows if r.get("counted") is False])
        return [row["chatId"] for row in rows]

    def get_chats(self, run_id: str, chat_ids: Iterable[str]) -> dict[str, ChatRow]:
        rows: dict[str, ChatRow] = {}
        for chat_id in chat_ids:
            try:
                row = self._table.get_entity(chat_partition(run_id, chat_id), chat_key(chat_id))
            except ResourceNotFoundError:
                continue
            rows[chat_id] = ChatRow(
                chat_id, row["state"], row.metadata["etag"], row.get("claim"), row.get("claimedAt"), row.get("recordedBy")
            )
        return rows

    def _refresh(self, run_id: str, row: ChatRow) -> ChatRow | None:
        return self.get_chats(run_id, [row.chat_id]).get(row.chat_id)

    def claim(self, run_id: str, rows: list[ChatRow], claim: str) -> list[ChatRow]:
        """Marks chats as being upgraded by `claim`; returns the rows it got (others moved on meanwhile)."""
        got: list[ChatRow] = []
        for partition, group in by_partition(run_id, rows, lambda row: row.chat_id).items():
            got += self._claim_in(partition, run_id, group, claim)
        return got

    def _claim_in(self, partition: str, run_id: str, rows: list[ChatRow], claim: str) -> list[ChatRow]:
        while rows:
            ops = [
                (
                    "update",
                    {
                        "PartitionKey": partition,
                        "RowKey": chat_key(r.chat_id),
                        "state": "claimed",
                        "claim": claim,
                        "claimedAt": datetime.now(UTC),
                    },
                    {"mode": UpdateMode.MERGE, "etag": r.etag, "match_condition": MatchConditions.IfNotModified},
                )
                for r in rows[:MAX_OPS]
            ]
            try:
                results = self._submit(ops)
            except TableTransactionError as exc:
                if exc.error_code != CHANGED or exc.index >= len(ops):
                    raise
                fresh = self._refresh(run_id, rows[exc.index])
                taken = fresh is not None and fresh.state == "claimed" and fresh.claim != claim and not fresh.stale_claim
                if fresh is None or fresh.state not in ("pending", "claimed") or taken:
                    del rows[exc.index]  # decided, or being upgraded right now by someone else
                else:
                    rows[exc.index] = fresh
                continue
            for row, result in zip(rows, results, strict=False):
                row.etag, row.state, row.claim = result["etag"], "claimed", claim
            return rows
        return []

    def record(self, run_id: str, rows: dict[str, ChatRow], outcomes: list[Outcome], chain: str | None) -> list[Outcome]:
        """Records final outcomes; returns those recorded here.

        A chat whose row changed since it was read is re-read: it is left alone when it has its
        outcome already, or when another batch holds it (see ChatRow.open_to)."""
        recorded: list[Outcome] = []
        known = [o for o in outcomes if o.chat_id in rows]
        for partition, pending in by_partition(run_id, known, lambda o: o.chat_id).items():
            recorded += self._record_in(partition, run_id, rows, pending, chain)
        return recorded

    def _record_in(
        self, partition: str, run_id: str, rows: dict[str, ChatRow], pending: list[Outcome], chain: str | None
    ) -> list[Outcome]:
        recorded: list[Outcome] = []
        while pending:
            batch = pending[: (MAX_OPS - 1) // 2]
            token = uuid.uuid4().hex
            ops: list = []
            owner: list[int] = []
            for i, o in enumerate(batch):
                entity = {"PartitionKey": partition, "RowKey": chat_key(o.chat_id), "state": o.outcome, "recordedBy": token}
                if o.version:
                    entity["installedVersion"] = o.version
                failure = {k: v for k, v in (o.failure or {}).items() if v is not None}
                entity.update(failure)
                opts = {"mode": UpdateMode.MERGE, "etag": rows[o.chat_id].etag, "match_condition": MatchConditions.IfNotModified}
                ops.append(("update", entity, opts))
                owner.append(i)
                if failure:
                    ops.append(
                        (
                            "upsert",
                            {"PartitionKey": partition, "RowKey": chat_key(o.chat_id, "fail-"), "chatId": o.chat_id, **failure},
                        )
                    )
                    owner.append(i)
            deltas: dict[str, int] = {"pending": -len(batch)}
            for o in batch:
                deltas[o.outcome] = deltas.get(o.outcome, 0) + 1
            try:
                self._commit(partition, ops, deltas)
            except TableTransactionError as exc:
                if exc.error_code != CHANGED or exc.index >= len(ops):
                    raise
                o = batch[owner[exc.index]]
                fresh = self._refresh(run_id, rows[o.chat_id])
                if fresh is not None and fresh.recorded_by == token:
                    recorded.extend(batch)  # this very transaction, resent after its answer was lost
                    del pending[: len(batch)]
                elif fresh is None or not fresh.open_to(chain):
                    pending.remove(o)
                else:
                    rows[o.chat_id] = fresh
                continue
            recorded.extend(batch)
            del pending[: len(batch)]
        return recorded

    # ---- steps ------------------------------------------------------------------------------------

    def get_step(self, run_id: str, step_id: str) -> StepRecord | None:
        try:
            row = self._table.get_entity(run_id, f"step-{step_id}")
        except ResourceNotFoundError:
            return None
        return StepRecord(row.get("messageId", ""), _unpack(row.get("children")))

    def complete_step(self, run_id: str, step_id: str, message_id: str, children: list[str], **deltas: int) -> StepRecord | None:
        """Marks a step done and counts its children as pending steps; None if another message did it."""
        row = {
            "PartitionKey": run_id,
            "RowKey": f"step-{step_id}",
            "messageId": message_id,
            "children": _pack(children),
            "doneAt": now_iso(),
        }
        try:
            self._commit(run_id, [("create", row)], {"stepsPending": len(children) - 1, **deltas})
        except TableTransactionError as exc:
            if exc.error_code != "EntityAlreadyExists":
                raise
            done = self.get_step(run_id, step_id)
            # ours when this very message wrote it: a resent transaction whose first answer was lost
            return done if done is not None and done.message_id == message_id else None
        return StepRecord(message_id, children)

    # ---- status -----------------------------------------------------------------------------------

    def status(self, run_id: str) -> dict | None:
        rows = list(
            self._table.query_entities(
                f"{RUN_PARTITIONS} and (RowKey eq 'run' or (RowKey ge 'count-' and RowKey lt 'count.'))",
                parameters=_run_range(run_id),
            )
        )
        run_row = next((r for r in rows if r["RowKey"] == "run"), None)
        if run_row is None:
            return None
        run = self._run_record(run_id, run_row)
        totals: dict[str, int] = {}
        for row in rows:
            if row["RowKey"].startswith("count-"):
                for key, value in row.items():
                    if isinstance(value, int) and not isinstance(value, bool):
                        totals[key] = totals.get(key, 0) + value
        counts = {k: totals.get(k, 0) for k in COUNTS}
        started = run.target is not None or run.error is not None
        if not started:
            state = "queued"
        elif run.error and run.error.code in FATAL_ERRORS:
            state = "failed"
        elif totals.get("stepsPending", 0) > 0:
            state = "discovering"
        elif counts["pending"] > 0:
            state = "upgrading"
        else:
            state = "failed" if run.error else "completed"  # a run that lost chats in discovery ends failed
        updated = max(r.metadata["timestamp"] for r in rows)
        return {
            "runId": run_id,
            "teamsAppId": run.teams_app_id,
            "targetVersion": run.target.version if run.target else run.requested_version,
            "dryRun": run.dry_run,
            "state": state,
            "counts": {"targets": sum(counts.values()), **counts},
            "failures": self._failures(run_id) if counts["failed"] else [],
            "error": run.error.to_dict() if run.error else None,
            "createdAt": run.created_at,
            "updatedAt": updated.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "discovery": {"mode": run.discovery_mode, **{k: totals.get(k, 0) for k in DISCOVERY_COUNTS}},
        }

    def _failures(self, run_id: str) -> list[dict]:
        rows = self._table.query_entities(
            f"{RUN_PARTITIONS} and RowKey ge 'fail-' and RowKey lt 'fail.'",
            parameters=_run_range(run_id),
            results_per_page=MAX_FAILURES_LISTED,
        )
        failures = []
        for row in rows:
            failures.append(
                {
                    "chatId": row["chatId"],
                    "status": row.get("status"),
                    "code": row.get("code", ""),
                    "message": row.get("message", ""),
                }
            )
            if len(failures) >= MAX_FAILURES_LISTED:
                break
        return failures
