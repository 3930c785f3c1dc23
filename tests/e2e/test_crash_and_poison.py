"""A worker process killed mid-run, and messages that fail every attempt."""

from __future__ import annotations

import base64
import logging
import threading

import azure.functions as func
from azure.storage.queue import QueueServiceClient

from shared import bootstrap
from shared.domain.app import TargetApp
from shared.domain.messages import LoadTargets, UpgradeTargets
from shared.domain.runs import RunSpec
from shared.domain.targets import Target
from shared.foundation.settings import StorageSettings
from shared.foundation.storage import TARGETS_QUEUE, Storage
from shared.queues import control
from tests.support import Api, group_chats, org_app, people, run_killing_a_worker, start_host, stores


def test_worker_killed_after_an_upgrade_went_through_upgrades_each_chat_once(app_env, tenant, emulator):
    app = org_app(tenant)
    chats = group_chats(tenant, people(tenant, 3), 4, {app.id: "1.0.0"})

    status = run_killing_a_worker(emulator, lambda api: api.start(teamsAppId=app.id, chatIds=[c.id for c in chats]), bool)

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
    runs, store = stores(azurite)
    run_id = "ab" * 16
    chat_ids = ["19:aaaa@thread.v2", "19:bbbb@thread.v2"]
    runs.create_run(RunSpec(run_id=run_id, teams_app_id=org_app(tenant).id, external_id=None, version=None, dry_run=False))
    store.add(run_id, [Target("chat", c) for c in chat_ids], source="test")
    queue = QueueServiceClient.from_connection_string(azurite.connection_string).get_queue_client(TARGETS_QUEUE)
    queue.create_queue()
    queue.send_message(
        base64.b64encode(UpgradeTargets(run_id=run_id, scope="chat", ids=tuple(chat_ids)).encode().encode()).decode()
    )

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
    runs, store = stores(azurite)
    run_id = "ef" * 16
    chat_ids = [f"19:{i:032x}@thread.v2" for i in range(12)]
    targets = [Target("chat", c) for c in chat_ids]
    app = org_app(tenant)
    runs.create_run(RunSpec(run_id=run_id, teams_app_id=app.id, external_id=None, version=None, dry_run=False, targets=targets))
    target = TargetApp(teams_app_id=app.id, external_id=None, display_name="App", definition_id="d", version="1.1.0")
    runs.set_target(run_id, target, {"chat": "explicit"})
    store.add(run_id, targets[:5], source="input-0")  # what the last attempt got done
    step = LoadTargets(run_id=run_id, step_id="input-0", input_key="input-0000")

    control.handle_poison(func.QueueMessage(id="poisoned-1", body=step.encode().encode()), bootstrap.get())

    status = runs.status(run_id)
    assert status["counts"]["failed"] == 12 and status["counts"]["targets"] == 12 and status["counts"]["pending"] == 0
    assert {f["chatId"] for f in status["failures"]} == set(chat_ids)
    assert {f["code"] for f in status["failures"]} == {"retriesExhausted"}
    chats = Storage(StorageSettings(connection_string=azurite.connection_string)).queue(TARGETS_QUEUE)
    assert chats.get_queue_properties().approximate_message_count == 0  # nothing queued for chats failed anyway


def test_undecodable_message_is_dropped_from_the_poison_queue_with_an_error_log(app_env, azurite, caplog):
    queue = QueueServiceClient.from_connection_string(azurite.connection_string).get_queue_client(TARGETS_QUEUE)
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
    poison = QueueServiceClient.from_connection_string(azurite.connection_string).get_queue_client(TARGETS_QUEUE + "-poison")
    assert not list(poison.peek_messages())
    assert not list(queue.peek_messages())
