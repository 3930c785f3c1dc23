"""The storage simulation (`python -m bench.run --scale`): how a run's use of storage grows with its
size, and what a run of 100,000 chats would need.

Runs of growing size go through the local stack with Graph's limits raised far above what the
storage needs and a short latency: every chat of the app, as the installation registry knows them
(filled by Graph's change notifications in a deployment, written directly here), so that no
limit on given ids applies and no user has to be scanned. A counting proxy in front of the storage
emulator records every table transaction, entity write, read and query, and every queue message.
Multiplied by the rate Graph allows, the figures per chat give the storage load of a run, which
the report compares with Azure Storage's scalability targets; entity writes are broken down by
table, to show which one grows with the run's size.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import requests

from bench.storage_meter import StorageMeter
from devtools.azurite import Azurite
from devtools.funchost import LocalHost
from devtools.graph_limits import Limits
from devtools.graph_process import EmulatorProcess
from devtools.identity import IdentityEndpoint
from devtools.tenant import Tenant
from shared import bootstrap
from shared.domain.targets import Target
from shared.foundation.settings import StorageSettings
from shared.foundation.storage import REGISTRY_TABLE, TARGETS_QUEUE, Storage
from shared.stores.registry import Registry
from shared.stores.run_cache import STEERING_TTL

TIMEOUT = 60  # seconds for one API call of the benchmark
# a status poll every second, or less often on large runs (every 100 s for 100,000 chats): each costs
# a query per partition of the run (counted apart from the run's own use), and the storage emulator,
# unlike Azure, scans every row of a table for each query: polled each second, a large run's
# status reads would take most of the emulator's time
CHATS_PER_POLL_SECOND = 1000

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 300  # requests/s per bucket, emulator and GRAPH_MAX_RPS: Graph is not what binds here
GRAPH_RPS = 30  # what Graph allows per bucket in a real tenant: the rate the projection uses
# Azure Storage scalability targets (standard general-purpose v2 account)
TABLE_PARTITION_ENTITIES = 2000  # entities per second per table partition
ACCOUNT_ENTITIES = 20000  # entities (table) or messages (queue) per second per account
QUEUE_MESSAGES = 2000  # messages per second per queue


@dataclass(frozen=True)
class Emulators:
    """Tables, the queue of batches and the other queues, each from an emulator process of its own:
    the emulator scans every message of an account on each receive, and a large run queues thousands
    of batches ahead, so that in one process every poll of an empty queue (ten pollers, each up to
    twice a second) would scan them all and stall the requests behind it (Azure's services do neither)."""

    tables: Azurite
    queues: Azurite
    batches: Azurite

    @classmethod
    def start(cls) -> Emulators:
        return cls(Azurite().start(), Azurite().start(), Azurite().start())

    def _all(self) -> tuple[Azurite, ...]:
        return (self.tables, self.queues, self.batches)

    def meter(self) -> StorageMeter:
        return StorageMeter(self.queues.queue_url, self.tables.table_url, queue_urls={TARGETS_QUEUE: self.batches.queue_url})

    def clear(self) -> None:
        for azurite in self._all():
            azurite.clear()

    def stop(self) -> None:
        for azurite in self._all():
            azurite.stop()


def _tenant(chats: int) -> tuple[Tenant, str]:
    tenant = Tenant(5)
    app = tenant.add_app("Contoso Scale", versions=("1.0.0", "1.1.0"))
    people = [tenant.add_user().id for _ in range(50)]
    for i in range(chats):
        tenant.add_chat("group", [people[i % 50], people[(i + 1) % 50], people[(i + 7) % 50]], installed={app.id: "1.0.0"})
    return tenant, app.id


def _run(size: int, storage: Emulators, identity: IdentityEndpoint, log: str) -> dict:
    tenant, app_id = _tenant(size)
    emulator = EmulatorProcess(
        tenant, authority=identity.authority, limits=Limits(bucket_rps=LIMIT, directory_rps=LIMIT), latency=0.005
    ).start()
    meter = storage.meter()
    os.environ.update(
        {
            "AzureWebJobsStorage": meter.connection_string,
            "GRAPH_BASE_URL": emulator.base_url,
            "GRAPH_MAX_RPS": str(LIMIT),
            "UPGRADE_SCOPES": "chat",
            "DISCOVERY_MODE": "registry",
        }
    )
    storage.clear()
    bootstrap.reset()
    # straight to the storage emulator, not through the meter: what the registry holds before the run is not its cost
    registry = Registry(Storage(StorageSettings(connection_string=storage.tables.connection_string)).table(REGISTRY_TABLE))
    registry.add(app_id, [Target("chat", c) for c in tenant.chats], source="notification")
    host = LocalHost(ROOT / "function_app.py", http_port=0, queue_workers=2, run_timers=False, worker_log=log).start()
    try:
        meter.reset()
        started = time.time()
        run_id = requests.post(f"{host.base_url}/api/publish", json={"teamsAppId": app_id}, timeout=TIMEOUT).json()["runId"]
        polls = 0
        while True:
            status = requests.get(f"{host.base_url}/api/runs/{run_id}", timeout=TIMEOUT).json()
            polls += 1
            if status["state"] in ("completed", "failed") and status["counts"]["pending"] == 0:
                break
            time.sleep(max(1.0, size / CHATS_PER_POLL_SECOND))
        elapsed = time.time() - started
    finally:
        host.stop()
        emulator.stop()
    try:
        usage = meter.usage
        before = Counter(usage.operations)
        bootstrap.get().runs.status(run_id)  # one more status read, metered alone now that all is still
        status_cost = Counter(meter.usage.operations) - before
    finally:
        meter.close()
        bootstrap.reset()
    targets = status["counts"]["targets"]
    ops = before  # the run's, without the status read above
    per_second = Counter(int(t - started) for t, _ in usage.entity_writes)
    per_partition_second = Counter((int(t - started), p) for t, p in usage.entity_writes)
    messages = Counter(int(t - started) for t, _ in usage.messages_sent)
    return {
        "targets": targets,
        "upgraded": status["counts"]["upgraded"],
        "state": status["state"],
        "seconds": round(elapsed, 1),
        "targetsPerSecond": round(targets / elapsed, 1),
        "perTarget": {
            "tableTransactions": round(ops["tableTransaction"] / targets, 3),
            "entityWrites": round(len(usage.entity_writes) / targets, 3),
            "tableReads": round(ops["tableRead"] / targets, 3),
            # the benchmark's own status polls aside (statusReadCost each)
            "tableQueries": round((ops["tableQuery"] - polls * status_cost["tableQuery"]) / targets, 3),
            "queueMessagesSent": round(ops["queueSend"] / targets, 3),
            "queueReceives": round(ops["queueReceive"] / targets, 3),
            "queueDeletes": round(ops["queueDelete"] / targets, 3),
            "queueUpdates": round(ops["queueUpdate"] / targets, 3),
        },
        "entityWritesPerTargetByTable": {t: round(n / targets, 3) for t, n in usage.writes_by_table.most_common()},
        # polled, so counted per second: at most a few per second per process (the control row is
        # cached STEERING_TTL per process, a schedule block lasts a while), whatever the run's size
        "perSecond": {
            "controlReads": round(ops["controlRead"] / elapsed, 2),
            "pacingReads": round(ops["pacingRead"] / elapsed, 2),
        },
        "statusReadCost": dict(status_cost),
        "statusPolls": polls,
        "peak": {
            "entityWritesPerSecond": max(per_second.values(), default=0),
            "entityWritesPerSecondOnOnePartition": max(per_partition_second.values(), default=0),
            "busiestPartition": _partition_kind(max(per_partition_second, key=per_partition_second.get)[1], run_id),
            "messagesPerSecond": max(messages.values(), default=0),
        },
        "achievedPeakShare": round(max(per_second.values(), default=0) / max(1, targets / elapsed), 2),
    }


def _partition_kind(partition: str, run_id: str) -> str:
    if partition == run_id:
        return "the run's row and counters"
    if partition.startswith(run_id + "-"):
        return "a partition of the run's targets"
    if partition == "schedule":
        return "the pacing schedule"
    return partition


def projection(runs: list[dict]) -> dict:
    """The storage load of a run at Graph's real rate, from the per-chat figures of the largest run."""
    largest = max(runs, key=lambda r: r["targets"])
    per = largest["perTarget"]
    upgrades = GRAPH_RPS * 0.95  # one GET and one POST per target, each bucket at the pacing target
    entities = per["entityWrites"] * upgrades
    return {
        "targetsPerSecond": round(upgrades, 1),
        "entityWritesPerSecond": round(entities, 1),
        "entityWritesPerSecondPerPartition": round(entities / 32, 1),
        "queueMessagesPerSecond": round(per["queueMessagesSent"] * upgrades, 2),
        "shareOfPartitionTarget": round(entities / 32 / TABLE_PARTITION_ENTITIES, 4),
        "shareOfAccountTarget": round((entities + per["queueMessagesSent"] * upgrades) / ACCOUNT_ENTITIES, 4),
        "shareOfQueueTarget": round(per["queueMessagesSent"] * upgrades / QUEUE_MESSAGES, 4),
        "hoursFor100000": round(100_000 / upgrades / 3600, 2),
        "tableTransactionsFor100000": round(per["tableTransactions"] * 100_000),
        "queueMessagesFor100000": round(per["queueMessagesSent"] * 100_000),
    }


def render(results: dict) -> str:
    lines = [
        f"Storage per chat, `python -m bench.run --scale` ({results['date']}): every chat of the app from the installation "
        f"registry, Graph limits {LIMIT}/s, 5 ms latency, 2 worker processes, a counting proxy in front of the storage emulator.",
        "",
        "| chats | run time | table transactions | entity writes | point reads | queries | queue messages sent "
        "| received / deleted | peak entity writes/s (one partition) | control / pacing reads per second |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["runs"]:
        p = r["perTarget"]
        lines.append(
            f"| {r['targets']:,} | {r['seconds']:g} s | {p['tableTransactions']:g} | {p['entityWrites']:g} | {p['tableReads']:g} "
            f"| {p['tableQueries']:g} | {p['queueMessagesSent']:g} | {p['queueReceives']:g} / {p['queueDeletes']:g} "
            f"| {r['peak']['entityWritesPerSecond']} ({r['peak']['entityWritesPerSecondOnOnePartition']}) "
            f"| {r['perSecond']['controlReads']:g} / {r['perSecond']['pacingReads']:g} |"
        )
    broken_down = [r for r in results["runs"] if r.get("entityWritesPerTargetByTable")]
    if broken_down:
        lines += ["", "Entity writes per chat, by table:", ""]
    for r in broken_down:
        tables = r["entityWritesPerTargetByTable"]
        lines.append(f"- {r['targets']:,} chats: " + ", ".join(f"{t} {n:g}" for t, n in tables.items()))
    pr = results["projection"]
    status = results["runs"][-1]["statusReadCost"]
    lines += [
        "",
        "Per chat: table transactions, entity writes, point reads (control and pacing polls aside, per second "
        f"in the last column: each process reads a run's control row about every {STEERING_TTL:g} s), queries, queue messages. "
        f"A status read costs {', '.join(f'{v} {k}' for k, v in status.items())} (one range query per partition "
        "of the run: its row and counters, then each target partition's counters), whatever the size. At Graph's "
        f"{GRAPH_RPS}/s per bucket a run upgrades {pr['targetsPerSecond']} chats/s, so it writes "
        f"{pr['entityWritesPerSecond']:g} entities/s ({pr['entityWritesPerSecondPerPartition']:g} per partition: "
        f"{pr['shareOfPartitionTarget']:.2%} of the 2,000/s a partition takes) and sends "
        f"{pr['queueMessagesPerSecond']:g} messages/s ({pr['shareOfQueueTarget']:.2%} of a queue's 2,000/s; "
        f"{pr['shareOfAccountTarget']:.2%} of the account's 20,000/s in all). 100,000 chats take "
        f"{pr['hoursFor100000']:g} h of Graph's limits, {pr['tableTransactionsFor100000']:,} table transactions and "
        f"{pr['queueMessagesFor100000']:,} queue messages.",
    ]
    return "\n".join(lines)


def run_scale(args) -> int:
    from datetime import UTC, datetime

    storage = Emulators.start()
    identity = IdentityEndpoint().start()
    os.environ.update(identity.env())
    try:
        runs = []
        for size in args.scale_sizes:
            print(f"== scale: {size} chats ==", flush=True)
            result = _run(size, storage, identity, args.log)
            print("  " + json.dumps(result), flush=True)
            runs.append(result)
    finally:
        identity.stop()
        storage.stop()
    results = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "runs": runs, "projection": projection(runs)}
    out = Path(args.out).with_name("scale.json")
    out.write_text(json.dumps(results, indent=2))
    out.with_suffix(".md").write_text(render(results) + "\n")
    print(render(results))
    return 0
