"""Counts stay exact, and no chat is upgraded twice, when duplicate messages race on two processes."""

from __future__ import annotations

import base64

from azure.storage.queue import QueueServiceClient

from shared.messages import StartRun, UpgradeChats
from shared.storage import CHATS_QUEUE, CONTROL_QUEUE
from tests.builders import group_chats, org_app, people
from tests.conftest import Api, start_host


def send(azurite, queue: str, text: str) -> None:
    client = QueueServiceClient.from_connection_string(azurite.connection_string).get_queue_client(queue)
    client.send_message(base64.b64encode(text.encode()).decode())


def test_duplicate_steps_and_batches_on_two_workers_keep_counts_exact(app_env, azurite, tenant, emulator):
    app_env.setenv("GRAPH_MAX_RPS", "20")
    app = org_app(tenant)
    users = people(tenant, 4)
    outdated = group_chats(tenant, users, 30, {app.id: "1.0.0"})
    current = group_chats(tenant, users, 10, {app.id: "1.1.0"})
    chat_ids = [c.id for c in outdated + current]

    host = start_host(queue_workers=2)
    try:
        api = Api(host.base_url)
        run_id = api.start(teamsAppId=app.id, chatIds=chat_ids)
        send(azurite, CONTROL_QUEUE, StartRun(run_id=run_id).encode())  # a second copy of the start step
        api.wait(run_id, until=lambda s: s["counts"]["targets"] == 40)
        for offset in range(0, 40, 7):  # every chat queued again, in other batches, while the run is going
            send(azurite, CHATS_QUEUE, UpgradeChats(run_id=run_id, chat_ids=tuple(chat_ids[offset : offset + 7])).encode())
        status = api.wait(run_id, timeout=90)
    finally:
        host.stop()

    assert status["state"] == "completed"
    assert status["counts"] == {
        "targets": 40,
        "upgraded": 30,
        "wouldUpgrade": 0,
        "alreadyCurrent": 10,
        "notInstalled": 0,
        "failed": 0,
        "pending": 0,
    }
    assert emulator.upgrades == {c.id: 1 for c in outdated}
    assert len(emulator.requests(kind="listCatalog")) == 2  # both copies of the start step ran
