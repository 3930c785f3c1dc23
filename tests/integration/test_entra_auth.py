"""Operator sign-in with Entra ID (API_AUTH=entra): real RS256 tokens from a local authority, checked
by the app against the authority's published keys; the function key is not what lets anyone in."""

from __future__ import annotations

import io
import uuid

import pytest
import requests

from devtools.entra import LocalAuthority, SigningKey
from shared.http.openapi import load
from tests.support import Api, group_chats, org_app, people, start_host

FUNCTION_KEY = "host-key-for-graph-only"


@pytest.fixture
def authority():
    instance = LocalAuthority().start()
    yield instance
    instance.stop()


@pytest.fixture
def entra(app_env, authority):
    app_env.setenv("API_AUTH", "entra")
    app_env.setenv("API_AUTH_TENANT_ID", authority.tenant_id)
    app_env.setenv("API_AUTH_CLIENT_ID", authority.api_client_id)
    app_env.setenv("API_AUTH_AUTHORITY", authority.url)
    host = start_host(function_key=FUNCTION_KEY)
    yield host
    host.stop()


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def _error(response: requests.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body["error"]) == {"code", "message"}
    return body["error"]["code"]


def test_a_run_records_who_started_it_and_who_cancelled_it(entra, authority, tenant, emulator):
    app = org_app(tenant)
    chats = group_chats(tenant, people(tenant, 2), 3, {app.id: "1.0.0"})
    ada, bo = str(uuid.uuid4()), str(uuid.uuid4())
    api = Api(entra.base_url)
    api.session.headers.update(_bearer(authority.token(object_id=ada, name="Ada Operator")))
    run_id = api.start(teamsAppId=app.id, chatIds=[c.id for c in chats])
    status = api.wait(run_id)
    assert status["startedBy"] == {"objectId": ada, "name": "Ada Operator"}
    assert status["counts"]["upgraded"] == 3

    # a pipeline's identity (an app-only v1 token) is recorded by its client id
    pipeline = authority.token(object_id=bo, version="1.0", app_only=True, appid="0f0e0d0c-0000-4000-8000-000000000001")
    second = requests.post(
        f"{entra.base_url}/api/publish",
        json={"teamsAppId": app.id, "chatIds": [chats[0].id]},
        headers=_bearer(pipeline),
        timeout=30,
    )
    assert second.status_code == 202, second.text
    status = api.wait(second.json()["runId"])
    assert status["startedBy"] == {"objectId": bo, "name": "app 0f0e0d0c-0000-4000-8000-000000000001"}


def test_no_token_a_bad_token_or_a_missing_role_is_refused_without_a_side_effect(entra, authority, tenant, emulator):
    app = org_app(tenant)
    chats = group_chats(tenant, people(tenant, 2), 1, {app.id: "1.0.0"})
    publish = f"{entra.base_url}/api/publish"
    body = {"teamsAppId": app.id, "chatIds": [chats[0].id]}
    stranger = SigningKey.new()
    refused = [
        ({}, 401, "unauthorized"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, 401, "unauthorized"),
        (_bearer("not-a-jwt"), 401, "invalidToken"),
        (_bearer(authority.token(lifetime=-900)), 401, "invalidToken"),  # expired beyond the clock skew
        (_bearer(authority.token(audience=str(uuid.uuid4()))), 401, "invalidToken"),
        (_bearer(authority.token(issuer="https://login.example/evil/v2.0")), 401, "invalidToken"),
        (_bearer(authority.token(tid=str(uuid.uuid4()))), 401, "invalidToken"),
        (_bearer(authority.token(key=stranger)), 401, "invalidToken"),  # a key the tenant does not publish
        (_bearer(authority.token(roles=())), 403, "missingRole"),
        (_bearer(authority.token(roles=("Upgrades.Read",))), 403, "missingRole"),
    ]
    documented = load()["paths"]["/publish"]["post"]["responses"]
    for headers, status, code in refused:
        response = requests.post(publish, json=body, headers=headers, timeout=30)
        assert _error(response, status) == code, headers
        assert code in documented[str(status)]["x-error-codes"]
        if status == 401:
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
    # the function key alone opens nothing any more
    assert _error(requests.post(publish, json=body, params={"code": FUNCTION_KEY}, timeout=30), 401) == "unauthorized"

    reader = Api(entra.base_url)
    reader.session.headers.update(_bearer(authority.token(roles=("Upgrades.Read",))))
    assert reader.runs().json()["value"] == []  # no run was created by any refused call
    assert emulator.requests() == []
    assert _error(reader.act("0" * 32, "cancel"), 403) == "missingRole"
    assert _error(reader.act("0" * 32, "retry"), 403) == "missingRole"
    assert _error(reader.act("0" * 32, "resume"), 403) == "missingRole"
    assert reader.session.get(f"{entra.base_url}/api/apps").status_code == 200


def test_v1_tokens_and_the_api_uri_audience_are_accepted(entra, authority):
    for token in (authority.token(version="1.0"), authority.token(audience=f"api://{authority.api_client_id}")):
        response = requests.get(f"{entra.base_url}/api/runs", headers=_bearer(token), timeout=30)
        assert response.status_code == 200, response.text


def test_a_rolled_signing_key_is_fetched_once_and_made_up_key_ids_do_not_flood_the_authority(entra, authority):
    runs = f"{entra.base_url}/api/runs"
    assert requests.get(runs, headers=_bearer(authority.token()), timeout=30).status_code == 200
    fetched = authority.requests.count(f"/{authority.tenant_id}/discovery/v2.0/keys")
    new = authority.rotate()
    for _ in range(3):
        assert requests.get(runs, headers=_bearer(authority.token(key=new)), timeout=30).status_code == 200
    assert authority.requests.count(f"/{authority.tenant_id}/discovery/v2.0/keys") == fetched + 1

    for _ in range(30):
        bogus = authority.token(key=SigningKey.new())
        assert _error(requests.get(runs, headers=_bearer(bogus), timeout=30), 401) == "invalidToken"
    assert authority.requests.count(f"/{authority.tenant_id}/discovery/v2.0/keys") <= fetched + 10


def test_notifications_stay_behind_the_function_key(entra):
    url = f"{entra.base_url}/api/notifications"
    assert requests.post(url, params={"validationToken": "abc"}, timeout=30).status_code == 401
    answer = requests.post(url, params={"validationToken": "abc", "code": FUNCTION_KEY}, timeout=30)
    assert answer.status_code == 200 and answer.text == "abc"


def test_an_unreachable_authority_is_a_503_not_a_500(entra, authority):
    authority.stop()
    response = requests.get(f"{entra.base_url}/api/runs", headers=_bearer(authority.token()), timeout=30)
    assert _error(response, 503) == "authorityUnavailable"


def test_the_cli_signs_in_with_entra_and_never_prints_the_token(entra, authority, identity, tenant, emulator):
    from upgrader_cli.main import run as cli

    app = org_app(tenant)
    chats = group_chats(tenant, people(tenant, 2), 2, {app.id: "1.0.0"})
    issued = []

    def mint() -> str:
        issued.append(authority.token(version="1.0", name="Pipeline Person", roles=("Upgrades.Run",)))
        return issued[-1]

    identity.issuers[f"api://{authority.api_client_id}"] = mint
    common = ["--url", entra.base_url, "--auth", "entra", "--api-client-id", authority.api_client_id, "--interval", "0.1"]
    out, err = io.StringIO(), io.StringIO()
    code = cli(["publish", "--app-id", app.id, *[f"--chat={c.id}" for c in chats], "--watch", *common], stdout=out, stderr=err)
    assert code == 0, err.getvalue()
    assert "Started by Pipeline Person" in out.getvalue()
    assert len(issued) == 1  # one token for the whole watch, renewed only near its expiry
    assert all(token not in out.getvalue() + err.getvalue() for token in issued)

    out, err = io.StringIO(), io.StringIO()
    assert cli(["runs", "--url", entra.base_url, "--auth", "entra"], stdout=out, stderr=err) == 2
    assert "--api-client-id" in err.getvalue()

    identity.issuers[f"api://{authority.api_client_id}"] = lambda: authority.token(version="1.0", roles=())
    out, err = io.StringIO(), io.StringIO()
    assert cli(["runs", *common], stdout=out, stderr=err) == 2
    assert "missingRole: This call needs the app role Upgrades.Read" in err.getvalue()
