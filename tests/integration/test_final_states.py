"""Final means final: on every path that ends a run (completed, cancelled, a missing permission that
only Graph's 403 tells, an unknown app, a start or discovery step that failed every attempt), the
first status that says completed, failed or cancelled has nothing pending, and reads the same once
every queued message is done."""

from __future__ import annotations

import pytest

from devtools.graph_limits import Limits
from tests.support import Api, final_for_good, graph_says_a_role_is_missing, group_chats, org_app, people, start_host, wait_for


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
