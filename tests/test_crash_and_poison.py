"""A worker process killed mid-run, and messages that fail every attempt."""

from __future__ import annotations

import base64
import logging
import signal
import threading

import azure.functions as func
from azure.storage.queue import QueueServiceClient

from shared import services, worker
from shared.catalog import TargetApp
from shared.messages import LoadTargets, UpgradeChats
from shared.runs import RunSpec, RunStore
from shared.settings import StorageSettings
from shared.storage import CHATS_QUEUE, RUNS_TABLE, Storage
from tests.builders import group_chats, org_app, people
from tests.conftest import Api, start_host


def test_worker_killed_after_an_upgrade_went_through_upgrades_each_chat_once(app_env, tenant, emulator):
    app = org_app(tenant)
    chats = group_chats(tenant, people(tenant, 3), 4, {app.id: "1.0.0"})
    applied, release = threading.Event(), threading.Event()

    def hold_first(chat_id: str) -> None:
        if not applied.is_set():
            applied.set()
            release.wait(30)  # the worker dies while waiting for this response

    emulator.on_upgrade = hold_first
    host = start_host(queue_workers=1, lease=2.0)
    try:
        api = Api(host.base_url)
        run_id = api.start(teamsAppId=app.id, chatIds=[c.id for c in chats])
        assert applied.wait(30), "no upgrade reached Graph"
        victim = host.workers[0]
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        host.workers.append(host.spawn_worker())
        release.set()
        status = api.wait(run_id, timeout=60)
    finally:
        release.set()
        host.stop()

    assert status["state"] == "completed"
    assert status["counts"]["upgraded"] == 4 and status["counts"]["pending"] == 0
    assert emulator.upgrades == {c.id: 1 for c in chats}
    assert all(c.installed[app.id] == "1.1.0" for c in chats)


def test_start_step_failing_every_attempt_fails_the_run_through_the_poison_queue(app_env, tenant, emulator):
    app_env.setenv("GRAPH_INLINE_RETRY_SECONDS", "0")
    app = org_app(tenant)
    emulator.inject(503, 1000, kind="listCatalog")
    host = start_host(queue_overrides={"max_polling_interval": 0.2, "visibility_timeout": 0})
    try:
        api = Api(host.base_url)
        status = api.wait(api.start(teamsAppId=app.id), timeout=60)
    finally:
        host.stop()

    assert status["state"] == "failed"
    assert status["error"]["code"] == "startFailed"
    assert len(emulator.requests(kind="listCatalog")) == 5  # maxDequeueCount attempts, then poison


def test_chat_batch_failing_every_attempt_records_its_chats_as_failed(app_env, azurite, tenant, emulator):
    """A batch for a run whose start never happened: every attempt raises, the poison handler records it."""
    runs = RunStore(Storage(StorageSettings(connection_string=azurite.connection_string)).table(RUNS_TABLE))
    run_id = "ab" * 16
    chat_ids = ["19:aaaa@thread.v2", "19:bbbb@thread.v2"]
    runs.create_run(RunSpec(run_id=run_id, teams_app_id=org_app(tenant).id, external_id=None, version=None, dry_run=False))
    runs.add_targets(run_id, chat_ids, source="test")
    queue = QueueServiceClient.from_connection_string(azurite.connection_string).get_queue_client(CHATS_QUEUE)
    queue.create_queue()
    queue.send_message(base64.b64encode(UpgradeChats(run_id=run_id, chat_ids=tuple(chat_ids)).encode().encode()).decode())

    host = start_host(queue_overrides={"max_polling_interval": 0.2, "visibility_timeout": 0})
    try:
        status = Api(host.base_url).wait(run_id, until=lambda s: s["counts"]["pending"] == 0, timeout=60)
    finally:
        host.stop()

    assert status["counts"]["failed"] == 2
    assert {f["chatId"] for f in status["failures"]} == set(chat_ids)
    assert {f["code"] for f in status["failures"]} == {"retriesExhausted"}
    assert all(f["status"] is None for f in status["failures"])


def test_chat_list_step_failing_every_attempt_records_its_chats_as_failed_without_queueing_them(
    app_env, azurite, tenant, emulator
):
    """The poison handler of a LoadTargets step, after a dying attempt recorded some of its chats."""
    runs = RunStore(Storage(StorageSettings(connection_string=azurite.connection_string)).table(RUNS_TABLE))
    run_id = "ef" * 16
    chat_ids = [f"19:{i:032x}@thread.v2" for i in range(12)]
    app = org_app(tenant)
    runs.create_run(RunSpec(run_id=run_id, teams_app_id=app.id, external_id=None, version=None, dry_run=False, chat_ids=chat_ids))
    target = TargetApp(teams_app_id=app.id, external_id=None, display_name="App", definition_id="d", version="1.1.0")
    runs.set_target(run_id, target, "chatIds")
    runs.add_targets(run_id, chat_ids[:5], source="input-0")  # what the last attempt got done
    step = LoadTargets(run_id=run_id, step_id="input-0", input_key="input-0000")

    worker.handle_control_poison(func.QueueMessage(id="poisoned-1", body=step.encode().encode()), services.get())

    status = runs.status(run_id)
    assert status["counts"]["failed"] == 12 and status["counts"]["targets"] == 12 and status["counts"]["pending"] == 0
    assert {f["chatId"] for f in status["failures"]} == set(chat_ids)
    assert {f["code"] for f in status["failures"]} == {"retriesExhausted"}
    chats = Storage(StorageSettings(connection_string=azurite.connection_string)).queue(CHATS_QUEUE)
    assert chats.get_queue_properties().approximate_message_count == 0  # nothing queued for chats failed anyway


def test_undecodable_message_is_dropped_from_the_poison_queue_with_an_error_log(app_env, azurite, caplog):
    queue = QueueServiceClient.from_connection_string(azurite.connection_string).get_queue_client(CHATS_QUEUE)
    queue.create_queue()
    queue.send_message(base64.b64encode(b'{"kind":"upgradeChats","runId":"nope"}').decode())
    dropped = threading.Event()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "undecodable" in record.getMessage():
                dropped.set()

    watcher = Watch()
    logging.getLogger().addHandler(watcher)
    host = start_host(queue_overrides={"max_polling_interval": 0.2, "visibility_timeout": 0})
    try:
        assert dropped.wait(30)
    finally:
        host.stop()
        logging.getLogger().removeHandler(watcher)
    poison = QueueServiceClient.from_connection_string(azurite.connection_string).get_queue_client(CHATS_QUEUE + "-poison")
    assert not list(poison.peek_messages())
    assert not list(queue.peek_messages())
