"""The retention purge, measured (`python -m bench.run --purge 100000`): a finished run of N targets
is laid down in storage as a run leaves it (a target row each, failure rows, counter shards in its
32 partitions, steps and inputs), then RUN_RETENTION's purge deletes it, through the storage meter:
transactions, entities deleted and time. The rows are written straight into storage (as the run's
own code writes them: a run of 100,000 would take an hour at Graph's pace to produce them)."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

from bench.storage_meter import StorageMeter
from devtools.azurite import Azurite
from shared import bootstrap
from shared.automatic.retention import purge_finished_runs
from shared.domain.app import TargetApp
from shared.domain.runs import RunSpec
from shared.domain.targets import Outcome, Target
from shared.foundation.settings import Settings
from shared.stores.target_rows import TargetRow

FAILED_EVERY = 50  # one target in 50 failed: failure rows too
BLOCKED = {"status": 403, "code": "Forbidden", "message": "App is blocked by app permission policy."}


def _finished_run(services, size: int) -> str:
    """A run of `size` chats, every target decided, as the run's stores record it."""
    run_id = uuid.uuid4().hex
    targets = [Target("chat", f"19:{i:032x}@thread.v2") for i in range(size)]
    spec = RunSpec(run_id=run_id, teams_app_id=str(uuid.uuid4()), external_id=None, version=None, dry_run=False)
    services.runs.create_run(spec)
    app = TargetApp(teams_app_id=str(uuid.uuid4()), external_id=None, display_name="Scale", definition_id="d", version="1.1.0")
    services.runs.set_target(run_id, app, {"chat": "explicit"})
    services.runs.complete_step(run_id, "start", "bench", [])
    for start in range(0, size, 5_000):
        chunk = targets[start : start + 5_000]
        added = services.targets.add(run_id, chunk, source="start", order={t: start + i for i, t in enumerate(chunk)})
        rows = {t: TargetRow(t, "pending", etag) for t, etag in added.items()}
        outcomes = [
            Outcome(t, "failed", failure=BLOCKED) if i % FAILED_EVERY == 0 else Outcome(t, "upgraded", version="1.1.0")
            for i, t in enumerate(chunk)
        ]
        services.targets.record(run_id, rows, outcomes, chain=None)
    return run_id


def run_purge(args) -> int:
    size = args.purge
    tables, queues = Azurite().start(), Azurite().start()
    meter = StorageMeter(queues.queue_url, tables.table_url)
    os.environ.update({"AzureWebJobsStorage": meter.connection_string, "RUN_RETENTION": "PT1S"})
    try:
        bootstrap.reset()
        services = bootstrap.build(Settings.from_env())
        print(f"== purge: laying down a finished run of {size} targets ==", flush=True)
        began = time.monotonic()
        run_id = _finished_run(services, size)
        laid = time.monotonic() - began
        status = services.runs.status(run_id)
        assert status["state"] == "completed" and status["counts"]["targets"] == size, status["counts"]
        services.runs.going()  # files the finished run into the history, as any status reader does
        time.sleep(1.5)  # older than RUN_RETENTION (PT1S)
        meter.usage.operations.clear()
        began = time.monotonic()
        purged = purge_finished_runs(services)
        took = time.monotonic() - began
        operations = dict(meter.usage.operations)
        after = services.runs.status(run_id)
        result = {
            "targets": size,
            "layDownSeconds": round(laid, 1),
            "purgeSeconds": round(took, 1),
            "runsPurged": purged.runs,
            "deleteTransactions": purged.transactions,
            "storage": operations,
            "statusAfter": {"targetsPurgedAt": after.get("targetsPurgedAt"), "failuresListed": len(after.get("failures") or [])},
        }
        print(json.dumps(result, indent=2))
        Path(args.out).with_name("purge.json").write_text(json.dumps(result, indent=2) + "\n")
        return 0
    finally:
        meter.close()
        tables.stop()
        queues.stop()
