"""Final means final: on every path that ends a run (completed, cancelled, a missing permission that
only Graph's 403 tells, an unknown app, a start or discovery step that failed every attempt, a batch
that failed every attempt), the first status that says completed, failed or cancelled has nothing
pending, and reads the same at every read after; a cancel or an error recorded after the end (a race
with the run's last outcome) changes nothing."""

from __future__ import annotations

import base64
from dataclasses import replace

import pytest
from azure.storage.queue import QueueServiceClient

from devtools.graph_limits import Limits
from shared.domain.messages import UpgradeTargets
from shared.domain.steering import Caller
from shared.foundation.errors import ErrorInfo
from shared.foundation.storage import POISON_SUFFIX, TARGETS_QUEUE
from tests.support import (
    Api,
    final_for_good,
    graph_says_a_role_is_missing,
    group_chats,
    org_app,
    people,
    start_host,
    stores,
    wait_for,
)


def test_a_completed_run(api, azurite, tenant, emulator):
    app = org_app(tenant)
    status = final_for_good(api, azurite, api.start(teamsAppId=app.id))
    assert status["state"] == "completed"


def test_a_cancelled_run(api, app_env, azurite, tenant, emulator):
    emulator.limits = emulator.throttle.limits = Limits(bucket_rps=5, directory_rps=5, retry_after=1)
    app = org_app(tenant)
    ids = [c.id for c in group_chats(tenant, people(tenant, 2), 30, {app.id: "1.0.0"})]
    run_id = api.start(teamsAppId=app.id, chatIds=ids)
    wait_for(lambda: emulator.upgrades)
    assert api.act(run_id, "cancel").status_code == 202
    status = final_for_good(api, azurite, run_id)
    assert status["state"] == "cancelled" and status["counts"]["cancelled"] > 0


def test_a_missing_permission_only_graph_tells(api, azurite, tenant, emulator):
    graph_says_a_role_is_missing(emulator)
    app = org_app(tenant)
    ids = [c.id for c in group_chats(tenant, people(tenant, 2), 40, {app.id: "1.0.0"})]
    status = final_for_good(api, azurite, api.start(teamsAppId=app.id, chatIds=ids))
    assert status["state"] == "failed" and status["error"]["code"] == "missingPermissions"
    assert status["counts"]["cancelled"] == 40 and status["counts"]["failed"] == 0


def test_an_unknown_app(api, azurite, tenant, emulator):
    status = final_for_good(api, azurite, api.start(teamsAppId="00000000-0000-4000-8000-000000000001"))
    assert status["state"] == "failed" and status["error"]["code"] == "appNotFound"


@pytest.mark.parametrize(("kind", "code"), [("listCatalog", "startFailed"), ("listUsers", "discoveryIncomplete")])
def test_a_step_that_failed_every_attempt(app_env, azurite, tenant, emulator, kind, code):
    app_env.setenv("GRAPH_INLINE_RETRY_SECONDS", "0")  # each attempt fails at once
    emulator.inject(503, 100_000, kind=kind)
    app = org_app(tenant)
    group_chats(tenant, people(tenant, 2), 3, {app.id: "1.0.0"})
    host = start_host(queue_overrides={"max_polling_interval": 0.2, "visibility_timeout": 0})
    try:
        api = Api(host.base_url)
        status = final_for_good(api, azurite, api.start(teamsAppId=app.id))
    finally:
        host.stop()
    assert status["state"] == "failed" and status["error"]["code"] == code


def test_a_batch_that_failed_every_attempt(api, azurite, tenant, emulator):
    app = org_app(tenant)
    ids = [c.id for c in group_chats(tenant, people(tenant, 2), 3, {app.id: "1.0.0"})]
    run_id = api.start(teamsAppId=app.id, chatIds=ids, rollout={"steps": [{"pause": {}}]})
    api.wait(run_id, until=lambda s: s["state"] == "paused" and s["counts"]["pending"] == 3)
    # what the host does with a batch whose every attempt raised: onto the poison queue, whose handler ends it
    poison = QueueServiceClient.from_connection_string(azurite.connection_string).get_queue_client(TARGETS_QUEUE + POISON_SUFFIX)
    message = UpgradeTargets(run_id=run_id, scope="chat", ids=tuple(ids)).encode()
    poison.send_message(base64.b64encode(message.encode()).decode())
    status = final_for_good(api, azurite, run_id)
    assert status["state"] == "completed" and status["counts"]["failed"] == 3
    assert {f["code"] for f in status["failures"]} == {"retriesExhausted"} and not emulator.upgrades


def test_a_cancel_or_an_error_recorded_after_the_end_changes_nothing(api, azurite, tenant, emulator):
    app = org_app(tenant)
    ids = [c.id for c in group_chats(tenant, people(tenant, 2), 3, {app.id: "1.0.0"})]
    run_id = api.start(teamsAppId=app.id, chatIds=ids)
    status = final_for_good(api, azurite, run_id)
    runs, _ = stores(azurite)
    # what a cancel that read the run as upgrading writes when the run's last outcome came first,
    # and an error a late step records
    runs.change_steering(run_id, lambda s: replace(s, cancelled_at="2026-12-06T08:00:00.000Z", cancelled_by=Caller(None, "api")))
    runs.change_steering(run_id, lambda s: replace(s, error=ErrorInfo("missingPermissions", "late")))
    assert api.status(run_id) == status and status["state"] == "completed" and status["counts"]["upgraded"] == 3
    assert next(r for r in api.runs(appId=app.id).json()["value"] if r["runId"] == run_id) == {
        k: v for k, v in status.items() if k != "failures"
    }
