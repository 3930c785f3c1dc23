"""RUN_RETENTION: the target rows of finished runs go, their status documents stay (failures as
recorded, and when the targets were purged), a retry of such a run is a 409, and the purge waits
while a run is busy and leaves a run that is going untouched."""

from __future__ import annotations

import threading
import time
from datetime import datetime

from azure.data.tables import TableServiceClient

from shared.foundation.storage import RUNS_TABLE
from tests.support import Api, group_chats, org_app, people, start_host, wait_for


def _at(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _rows_of(azurite, run_id: str) -> list[str]:
    table = TableServiceClient.from_connection_string(azurite.connection_string).get_table_client(RUNS_TABLE)
    rows = table.query_entities("PartitionKey ge @a and PartitionKey lt @b", parameters={"a": run_id, "b": run_id + "."})
    return [row["RowKey"] for row in rows]


def test_old_runs_lose_their_target_rows_and_keep_their_status(app_env, azurite, tenant, emulator):
    app_env.setenv("RUN_RETENTION", "PT1S")
    old, busy = org_app(tenant, name="Old"), org_app(tenant, name="Busy")
    chats = group_chats(tenant, people(tenant, 2), 8, {old.id: "1.0.0"})
    chats[0].blocked.add(old.id)
    slow = [c.id for c in group_chats(tenant, people(tenant, 2), 20, {busy.id: "1.0.0"})]
    host = start_host()
    reached, release = threading.Event(), threading.Event()
    try:
        api = Api(host.base_url)
        finished = api.wait(api.start(teamsAppId=old.id, chatIds=[c.id for c in chats]))
        assert finished["counts"]["failed"] == 1 and any(k.startswith("t-") for k in _rows_of(azurite, finished["runId"]))

        emulator.on_upgrade = lambda _: (reached.set(), release.wait(30))  # Graph sits on the busy run's upgrades
        going = api.start(teamsAppId=busy.id, chatIds=slow)
        assert reached.wait(30)
        wait_for(lambda: time.time() - _at(api.status(finished["runId"])["updatedAt"]) > 1.2)
        assert host.fire("run_retention")  # a run is busy: nothing is purged, old as the other one is
        assert api.status(finished["runId"]).get("targetsPurgedAt") is None
        going_rows = len(_rows_of(azurite, going))

        api.act(going, "cancel")
        release.set()
        cancelled = api.wait(going)
        paused = api.start(teamsAppId=old.id, chatIds=[chats[1].id], rollout={"steps": [{"pause": {}}]})
        api.wait(paused, until=lambda s: s["state"] == "paused")  # paused: uses no storage, not purged (not over)
        wait_for(lambda: api.status(going)["updatedAt"] < api.status(paused)["createdAt"])
        wait_for(lambda: time.time() - _at(api.status(going)["updatedAt"]) > 1.2)  # over longer than RUN_RETENTION
        assert host.fire("run_retention")

        for run in (finished, cancelled):
            status = api.status(run["runId"])
            assert status["targetsPurgedAt"] is not None
            assert {k: v for k, v in status.items() if k != "targetsPurgedAt"} == run  # failures as recorded
            assert not [k for k in _rows_of(azurite, run["runId"]) if k.startswith(("t-", "f-", "step-", "input-"))]
        assert going_rows > 0 and any(k.startswith("t-") for k in _rows_of(azurite, paused))
        assert api.status(paused).get("targetsPurgedAt") is None

        listed = {r["runId"]: r for r in api.runs(appId=old.id).json()["value"]}
        assert listed[finished["runId"]]["targetsPurgedAt"] == api.status(finished["runId"])["targetsPurgedAt"]
        retry = api.act(finished["runId"], "retry")
        assert retry.status_code == 409 and retry.json()["error"]["code"] == "targetsPurged"
        api.act(paused, "cancel")
    finally:
        release.set()
        host.stop()
