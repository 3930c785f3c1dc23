"""The OpenAPI document is true: it is served, every example in it holds against the running app,
every error code the routes can answer is documented, and a bounded fuzz of the running local
stack finds no 5xx, no response outside the document and no error body of another shape."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import jsonschema
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from shared.http.openapi import load
from tests.support import group_chats, org_app, people

EXAMPLES_PER_OPERATION = 25  # per generation mode: the fuzz stays within seconds
ROOT = Path(__file__).resolve().parents[2]


def _json_schema(schema: dict, components: dict) -> dict:
    """An OpenAPI 3.0 schema as JSON Schema: `nullable` becomes a null type, refs are resolved."""

    def convert(node):
        if isinstance(node, list):
            return [convert(n) for n in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            return convert(components[node["$ref"].rsplit("/", 1)[1]])
        out = {k: convert(v) for k, v in node.items() if k not in ("nullable", "example", "x-error-codes")}
        if node.get("exclusiveMinimum") is True:  # OpenAPI 3.0's boolean form
            out["exclusiveMinimum"] = out.pop("minimum")
        if node.get("nullable"):
            return {"anyOf": [out, {"type": "null"}]}
        return out

    return convert(copy.deepcopy(schema))


def _responses():
    document = load()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                yield path, method, status, response


def test_the_document_is_served_with_the_server_it_was_reached_at(api):
    response = api.session.get(f"{api.base_url}/api/openapi.json")
    assert response.status_code == 200
    served = response.json()
    assert served["openapi"].startswith("3.0")
    assert served["servers"] == [{"url": f"{api.base_url}/api"}]
    assert served["paths"] == load()["paths"]


def test_every_example_matches_its_schema():
    components = load()["components"]["schemas"]
    checked = 0
    for path, _method, status, response in _responses():
        for media in (response.get("content") or {}).values():
            if "example" in media:
                jsonschema.validate(media["example"], _json_schema(media["schema"], components))
                checked += 1
                if int(status) >= 400:
                    assert media["example"]["error"]["code"] in response["x-error-codes"], (path, status)
    for operation in (op for ops in load()["paths"].values() for op in ops.values()):
        for media in (operation.get("requestBody") or {}).get("content", {}).values():
            for example in (media.get("examples") or {}).values():
                jsonschema.validate(example["value"], _json_schema(media["schema"], components))
                checked += 1
    assert checked >= 15


def test_every_error_code_the_routes_raise_is_documented_for_its_route():
    documented = {code for *_, response in _responses() for code in response.get("x-error-codes", [])}
    raised = set()
    for source in (ROOT / "shared").rglob("*.py"):
        text = source.read_text()
        raised |= set(re.findall(r'(?:RequestError|_bad)\(\s*"([a-zA-Z]+)"', text))
        raised |= set(re.findall(r'ErrorInfo\("([a-zA-Z]+)"', text)) & {"runNotFound", "invalidNotification"}
    raised |= {f"invalid{f}Id" for f in ("Chat", "Team", "User")} | {f"invalid{f}Ids" for f in ("Chat", "Team", "User")}
    assert raised - documented == set()


def test_documented_examples_hold_against_the_running_app(api, tenant, emulator):
    """Each example request is sent; each documented error example is provoked, and the live answer
    has the documented status, code and shape."""
    document = load()
    components = document["components"]["schemas"]
    app = org_app(tenant)
    tenant.add_app("Helpdesk", versions=("1.0.0",), external_id="com.contoso.helpdesk")
    group_chats(tenant, people(tenant, 2), 1, {app.id: "1.0.0"})

    def conforms(path: str, method: str, response) -> None:
        declared = document["paths"][path][method]["responses"]
        assert str(response.status_code) in declared, (path, response.status_code, response.text)
        content = declared[str(response.status_code)].get("content") or {}
        if "application/json" in content:
            jsonschema.validate(response.json(), _json_schema(content["application/json"]["schema"], components))

    publish = document["paths"]["/publish"]["post"]
    for name, example in publish["requestBody"]["content"]["application/json"]["examples"].items():
        body = dict(example["value"])
        if "teamsAppId" in body:
            body["teamsAppId"] = app.id
        response = api.publish(body)
        assert response.status_code == 202, (name, response.text)
        conforms("/publish", "post", response)
        run_id = response.json()["runId"]
        held = api.wait(run_id, until=lambda s: s["state"] in ("completed", "failed", "cancelled", "paused", "waiting"))
        if held["state"] in ("paused", "waiting"):  # a plan that waits for an operator or its window
            conforms("/runs/{runId}", "get", api.session.get(f"{api.base_url}/api/runs/{run_id}"))
            assert api.act(run_id, "cancel").status_code == 202
            api.wait(run_id)

    finished = api.start(teamsAppId=app.id, dryRun=True)
    api.wait(finished)
    provoked = {
        ("/publish", "post", "400"): lambda: api.publish({"teamsAppId": app.id, "canary": {"targets": 0}}),
        ("/publish", "post", "413"): lambda: api.publish(data=b"{" + b" " * (1024 * 1024 + 1) + b"}"),
        ("/runs", "get", "400"): lambda: api.runs(top="500"),
        ("/runs/{runId}", "get", "404"): lambda: api.session.get(f"{api.base_url}/api/runs/{'0' * 32}"),
        ("/runs/{runId}/cancel", "post", "409"): lambda: api.act(finished, "cancel"),
        ("/runs/{runId}/resume", "post", "409"): lambda: api.act(finished, "resume"),
        ("/runs/{runId}/retry", "post", "409"): lambda: api.act(finished, "retry"),
        ("/runs/{runId}/cancel", "post", "404"): lambda: api.act("0" * 32, "cancel"),
        ("/notifications", "post", "400"): lambda: api.session.post(f"{api.base_url}/api/notifications", json=[1]),
    }
    for (path, method, status), call in provoked.items():
        response = call()
        assert str(response.status_code) == status, (path, response.text)
        conforms(path, method, response)
        example = document["paths"][path][method]["responses"][status]["content"]["application/json"]["example"]
        codes = document["paths"][path][method]["responses"][status]["x-error-codes"]
        assert response.json()["error"]["code"] in codes
        assert set(response.json()["error"]) == set(example["error"])
    for path, method in (("/runs", "get"), ("/runs/{runId}", "get"), ("/apps", "get"), ("/health", "get")):
        url = f"{api.base_url}/api{path.replace('{runId}', finished)}"
        conforms(path, method, api.session.get(url))


def _error_body_shape(ctx, response, case) -> None:
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error"}, body
        assert set(body["error"]) == {"code", "message"}, body
        assert all(isinstance(v, str) and v for v in body["error"].values()), body


@schemathesis.check
def _rejects_invalid_data(ctx, response, case) -> bool | None:
    """Invalid requests are refused; 413 (a body past 1 MiB, documented) is a refusal too, and the
    negative fuzzing builds such bodies (thousands of long ids) now and then."""
    if response.status_code == 413:
        return None
    return negative_data_rejection(ctx, response, case)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_fuzzing_the_running_app_finds_no_server_error_and_nothing_undocumented(api, tenant, mode):
    org_app(tenant)
    schema = schemathesis.openapi.from_dict(load())
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
        response_headers_conformance,
    ]
    if mode == GenerationMode.NEGATIVE:
        checks.append(_rejects_invalid_data)
    base_url = f"{api.base_url}/api"
    for result in schema.get_all_operations():
        operation = result.ok()
        definition = operation.definition.raw
        if mode == GenerationMode.NEGATIVE and not (definition.get("parameters") or definition.get("requestBody")):
            continue  # nothing in the request to make invalid

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case) -> None:
            response = case.call(base_url=base_url, session=api.session)
            case.validate_response(response, checks=checks)
            if response.headers.get("Content-Type", "").startswith("application/json"):
                _error_body_shape(None, response, case)

        fuzz()
