"""RUN_RETENTION, a timer: the target rows of runs finished longer ago than that are deleted, in
transactions of 100, one run after another; each run keeps its status document (failures as
recorded, and when its targets were purged), so the run history and its status still answer.
The purge never competes with a run: it starts only while no run is busy (a paused or waiting
run uses no storage), looks again after each CHECK_SECONDS of purging, and stops (to go on at the
next tick) as soon as one is: a run that starts meanwhile shares storage with it for a second at most
(and one transaction of 100 deletes), on any store however fast."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from shared.domain.steering import iso
from shared.foundation.telemetry import event
from shared.services import Services

CHECK_SECONDS = 1.0  # of purging between two looks for a run that started meanwhile
BUSY = ("queued", "discovering", "upgrading", "cancelling", "failing")  # states that use storage (paused and waiting runs do not)


@dataclass
class Purged:
    runs: int = 0
    transactions: int = 0
    stopped_for_a_run: bool = False


def purge_finished_runs(services: Services) -> Purged:
    done = Purged()
    cutoff = iso(services.now() - services.settings.run_retention)
    if _busy(services):  # (reading the runs going also files those found over into the history)
        done.stopped_for_a_run = True
    for key, document in [] if done.stopped_for_a_run else services.runs.finished(cutoff):
        if (done.runs and _busy(services)) or not _purge(services, key, document, done):
            done.stopped_for_a_run = True
            break
        done.runs += 1
    if done.runs or done.stopped_for_a_run:
        event(
            "retention",
            "Purged the target rows of %d runs finished before %s (%d transactions)%s",
            done.runs,
            cutoff,
            done.transactions,
            "; a run is going: the rest waits" if done.stopped_for_a_run else "",
            runs=done.runs,
            transactions=done.transactions,
            level=logging.INFO,
        )
    return done


def _busy(services: Services) -> bool:
    return any(status["state"] in BUSY for status in services.runs.going())


def _purge(services: Services, key: str, document: dict, done: Purged) -> bool:
    """Purges one run; False when a run started meanwhile (the purge goes on at the next tick)."""
    run_id = document["runId"]
    run = services.runs.get_run(run_id)
    if run is None:
        return True
    purged_at = run.targets_purged_at or iso(services.now())
    if run.targets_purged_at is None:
        services.runs.purging.keep_document(run_id, services.runs.status(run_id), purged_at)
    started = looked = time.monotonic()
    for partition, keys in services.runs.purging.deletions(run_id):
        if time.monotonic() - looked >= CHECK_SECONDS:
            if _busy(services):
                return False
            looked = time.monotonic()
        services.runs.purging.delete(partition, keys)
        done.transactions += 1
    services.runs.note_purged(key, {**document, "targetsPurgedAt": purged_at})
    event("retention", "Run %s: target rows purged in %.1f s", run_id, time.monotonic() - started, runId=run_id)
    return True
