"""Storage under a large run's load: a large installation registry read whole (and rows of its
first layout still honoured), concurrent counting that never resends a transaction, and as many
connections kept open as a worker has requests in flight."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from azure.data.tables import UpdateMode

from shared.domain.targets import Target
from shared.foundation.settings import StorageSettings
from shared.foundation.storage import REGISTRY_TABLE, RUNS_TABLE, Storage
from shared.stores.counters import Counters, counter_totals
from shared.stores.partitions import COUNTER_ROWS, target_partition
from shared.stores.registry import Registry


def table(azurite, name: str):
    return Storage(StorageSettings(connection_string=azurite.connection_string)).table(name)


def test_a_large_registry_is_read_whole_and_counted_once_per_target(azurite):
    registry = Registry(table(azurite, REGISTRY_TABLE))
    chats = [Target("chat", f"19:{i:032x}@thread.v2") for i in range(1200)]
    teams = [Target("team", f"{i:08x}-0000-0000-0000-000000000000") for i in range(30)]
    registry.add("app-large", chats + teams + chats[:50], source="scan")
    registry.add("app-other", chats[:5], source="scan")

    assert sorted(registry.targets("app-large", "chat"), key=str) == sorted(chats, key=str)
    assert registry.counts("app-large") == {"chat": 1200, "team": 30}

    registry.remove("app-large", chats[0])
    assert chats[0] not in registry.targets("app-large", "chat")
    assert registry.counts("app-other") == {"chat": 5}


def test_a_registry_read_mixes_the_partitions_a_run_lays_its_targets_out_in(azurite):
    """A run lays out the registry's installations in chunks of the order they are read in: a chunk
    drawn from one partition would put all its writes on one partition of the run at once."""
    registry = Registry(table(azurite, REGISTRY_TABLE))
    chats = [Target("chat", f"19:{i:032x}@thread.v2") for i in range(1600)]
    registry.add("app-spread", chats, source="scan")

    read = registry.targets("app-spread", "chat")
    assert sorted(read, key=str) == sorted(chats, key=str)
    run_id = "0" * 32
    for chunk in (read[:100], read[750:850], read[-100:]):
        partitions = Counter(target_partition(run_id, t) for t in chunk)
        assert len(partitions) >= 24 and max(partitions.values()) <= 12, partitions  # about 3 each of 32
    assert registry.targets("app-spread", "chat") == read  # the same order each time


def test_rows_of_the_registrys_first_layout_are_still_read_and_removed(azurite):
    """Registries written when all of an app's rows were in one partition (the app id) keep working."""
    store = table(azurite, REGISTRY_TABLE)
    registry = Registry(store)
    old = [Target("chat", f"19:old{i}@thread.v2") for i in range(3)]
    for target in old:
        row = {"PartitionKey": "app-old", "RowKey": target.key, "scope": "chat", "resourceId": target.id, "source": "scan"}
        store.upsert_entity(row, mode=UpdateMode.REPLACE)
    registry.add("app-old", [old[0], Target("chat", "19:new@thread.v2")], source="notification")  # seen again, and a new one

    assert set(registry.targets("app-old", "chat")) == {*old, Target("chat", "19:new@thread.v2")}
    assert registry.counts("app-old") == {"chat": 4}
    registry.remove("app-old", old[0])  # uninstalled: gone from both layouts
    registry.remove("app-old", old[1])
    assert set(registry.targets("app-old", "chat")) == {old[2], Target("chat", "19:new@thread.v2")}


class CountedCounters(Counters):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.sent = 0
        self._sent_lock = threading.Lock()

    def submit(self, ops: list) -> list[dict]:
        with self._sent_lock:
            self.sent += 1
        return super().submit(ops)


def test_threads_of_one_process_count_at_once_without_resending_a_transaction(azurite):
    """Each resent transaction costs storage every row it carries again: threads of one process
    counting into the same partition at once must not conflict with each other."""
    runs = table(azurite, RUNS_TABLE)
    counters = CountedCounters(runs)
    threads, each = 12, 15
    start = threading.Barrier(threads)

    def count(worker: int) -> None:
        start.wait()
        for i in range(each):
            row = {"PartitionKey": "run-00", "RowKey": f"t-{worker}-{i}"}
            counters.commit("run-00", [("create", row)], {"pending": 1, f"by{worker}": 1})

    workers = [threading.Thread(target=count, args=(w,)) for w in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()

    totals = counter_totals(runs.query_entities(f"PartitionKey eq 'run-00' and {COUNTER_ROWS}"))
    assert totals == {"pending": threads * each, **{f"by{w}": each for w in range(threads)}}
    assert counters.sent == threads * each  # each transaction sent once


def test_a_worker_busy_with_storage_keeps_its_connections(azurite, caplog):
    """A worker runs up to 24 invocations at once: a pool smaller than its requests in flight drops a
    connection after each request past it (a warning in the logs, a new handshake for the next)."""
    storage = Storage(StorageSettings(connection_string=azurite.connection_string))
    runs, queue = storage.table(RUNS_TABLE), storage.queue("pool-check")
    barrier = threading.Barrier(32)

    def busy(i: int) -> None:
        barrier.wait()
        runs.upsert_entity({"PartitionKey": "pool", "RowKey": str(i)})
        queue.send_message(str(i))

    with caplog.at_level(logging.WARNING, logger="urllib3.connectionpool"), ThreadPoolExecutor(32) as pool:
        list(pool.map(busy, range(32)))

    assert len(list(runs.query_entities("PartitionKey eq 'pool'"))) == 32
    assert [r.getMessage() for r in caplog.records if "pool is full" in r.getMessage()] == []
