"""Counts stay exact, and no chat is upgraded twice, when duplicate messages race on two processes
or the answer to a table transaction is lost."""

from __future__ import annotations

import base64

import requests
from azure.storage.queue import QueueServiceClient

from devtools.azurite import ACCOUNT, ACCOUNT_KEY
from devtools.loopback import reply, serve_calls, shutdown
from shared.domain.app import TargetApp
from shared.domain.messages import StartRun, UpgradeTargets
from shared.domain.runs import RunSpec
from shared.domain.targets import Outcome, Target
from shared.foundation.settings import StorageSettings
from shared.foundation.storage import CONTROL_QUEUE, RUNS_TABLE, TARGETS_QUEUE, Storage
from shared.stores.counters import Counters
from shared.stores.runs import RunStore
from shared.stores.targets import TargetRow, TargetStore
from tests.support import Api, group_chats, org_app, people, start_host


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
            batch = UpgradeTargets(run_id=run_id, scope="chat", ids=tuple(chat_ids[offset : offset + 7]))
            send(azurite, TARGETS_QUEUE, batch.encode())
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
        "cancelled": 0,
        "pending": 0,
    }
    assert emulator.upgrades == {c.id: 1 for c in outdated}
    assert len(emulator.requests(kind="listCatalog")) == 2  # both copies of the start step ran


class LossyTableProxy:
    """Forwards table requests to Azurite; when `drop` is set, the next transaction is committed by
    Azurite but its answer never reaches the client (the connection closes), as when a pooled
    connection dies under a request."""

    def __init__(self, table_url: str) -> None:
        self.drop = False
        self.dropped = 0
        self._target = table_url.rstrip("/").rsplit("/", 1)[0]  # scheme://host:port
        self._server = serve_calls(self._forward)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/{ACCOUNT}"

    def _forward(self, handler, body: bytes) -> None:
        headers = {k: v for k, v in handler.headers.items() if k.lower() != "host"}
        answer = requests.request(handler.command, self._target + handler.path, headers=headers, data=body, timeout=30)
        if self.drop and handler.path.endswith("/$batch"):
            self.drop = False
            self.dropped += 1
            handler.close_connection = True  # no answer: the client sees the connection end
            return
        skip = {"content-length", "transfer-encoding", "connection", "content-encoding"}
        reply(handler, answer.status_code, answer.content, {k: v for k, v in answer.headers.items() if k.lower() not in skip})

    def close(self) -> None:
        shutdown(self._server)


def test_transactions_whose_answer_is_lost_are_replayed_without_losing_or_double_counting(azurite):
    proxy = LossyTableProxy(azurite.table_url)
    connection = (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
        f"QueueEndpoint={azurite.queue_url};TableEndpoint={proxy.url};"
    )
    try:
        table = Storage(StorageSettings(connection_string=connection)).table(RUNS_TABLE)
        counters = Counters(table)
        runs, store = RunStore(table, counters), TargetStore(table, counters)
        run_id = "cd" * 16
        runs.create_run(RunSpec(run_id=run_id, teams_app_id="app", external_id=None, version=None, dry_run=False))
        targets = [Target("chat", f"19:{i:032x}@thread.v2") for i in range(120)]

        proxy.drop = True
        added = store.add(run_id, targets, source="start")
        assert proxy.dropped == 1 and set(added) == set(targets)

        proxy.drop = True
        rows = store.claim(run_id, [TargetRow(t, "pending", e) for t, e in added.items()], "chain:1")
        assert proxy.dropped == 2 and {r.target for r in rows} == set(targets)

        proxy.drop = True
        outcomes = [Outcome(t, "upgraded", version="1.1.0") for t in targets]
        recorded = store.record(run_id, {r.target: r for r in rows}, outcomes, chain="chain")
        assert proxy.dropped == 3 and {o.target for o in recorded} == set(targets)

        proxy.drop = True
        step = runs.complete_step(run_id, "start", "message-1", ["child-a", "child-b"])
        assert proxy.dropped == 4 and step is not None and step.children == ["child-a", "child-b"]
        for child in ("a", "b"):
            runs.complete_step(run_id, f"child-{child}", f"message-{child}", [])
        target = TargetApp(teams_app_id="app", external_id=None, display_name="App", definition_id="d", version="1.1.0")
        runs.set_target(run_id, target, {"chat": "explicit"})

        status = runs.status(run_id)
    finally:
        proxy.close()

    assert status["counts"]["upgraded"] == 120 and status["counts"]["pending"] == 0 and status["counts"]["targets"] == 120
    assert status["state"] == "completed"  # the start step and its two children each counted once
    assert store.get(run_id, targets[:1])[targets[0]].state == "upgraded"
