"""What the Functions host sees: function names, binding metadata, annotations, host.json, settings."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from devtools.functions_index import FunctionLoadError, load_app

ROOT = Path(__file__).resolve().parents[2]
QUEUE_NAME = re.compile(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$")


@pytest.fixture(scope="module")
def bindings() -> dict[str, list[dict]]:
    _, specs = load_app(ROOT / "function_app.py")  # reads app.get_functions().get_raw_bindings()
    return {spec.name: spec.bindings for spec in specs}


def by_type(bindings: list[dict], kind: str) -> dict:
    [binding] = [b for b in bindings if b["type"] == kind]
    return binding


def test_http_routes_methods_and_auth_levels(bindings):
    publish = by_type(bindings["publish"], "httpTrigger")
    status = by_type(bindings["run_status"], "httpTrigger")
    assert (publish["route"], publish["methods"], publish["authLevel"]) == ("publish", ["POST"], "FUNCTION")
    assert (status["route"], status["methods"], status["authLevel"]) == ("runs/{runId}", ["GET"], "FUNCTION")
    for name in ("publish", "run_status"):
        assert by_type(bindings[name], "http") == {"direction": "OUT", "type": "http", "name": "$return"}


def test_operator_routes_and_the_public_api_description(bindings):
    routes = {
        name: (t["route"], t["methods"], t["authLevel"]) for name, b in bindings.items() for t in b if t["type"] == "httpTrigger"
    }
    assert routes["run_history"] == ("runs", ["GET"], "FUNCTION")
    for action in ("cancel", "resume", "retry"):
        assert routes[f"{action}_run"] == (f"runs/{{runId}}/{action}", ["POST"], "FUNCTION")
    assert routes["openapi_document"] == ("openapi.json", ["GET"], "ANONYMOUS")  # no data in it, for API Management
    assert routes["health_check"] == ("health", ["GET"], "ANONYMOUS")  # the platform's health check sends no key


OPERATOR_ROUTES = {"publish", "run_history", "run_status", "cancel_run", "resume_run", "retry_run", "apps_status"}


def _auth_levels(specs) -> dict[str, str]:
    return {s.name: s.trigger["authLevel"] for s in specs if s.trigger["type"] == "httpTrigger"}


def test_with_entra_sign_in_the_app_checks_operators_and_the_host_still_guards_notifications(monkeypatch):
    monkeypatch.setenv("API_AUTH", "entra")
    entra = _auth_levels(load_app(ROOT / "function_app.py")[1])
    monkeypatch.setenv("API_AUTH", "key")
    keys = _auth_levels(load_app(ROOT / "function_app.py")[1])
    assert {n for n, level in entra.items() if level == "ANONYMOUS"} == OPERATOR_ROUTES | {"openapi_document", "health_check"}
    assert entra["graph_notifications"] == keys["graph_notifications"] == "FUNCTION"
    assert {n for n, level in keys.items() if level == "ANONYMOUS"} == {"openapi_document", "health_check"}


def test_every_function_runs_in_its_invocations_trace():
    _, specs = load_app(ROOT / "function_app.py")
    for spec in specs:
        assert spec.takes_context, spec.name
        assert spec.function.__code__.co_name == "run_in_invocation_trace", f"{spec.name} is not @traced"


def test_publish_writes_the_control_queue_through_an_output_binding(bindings):
    output = by_type(bindings["publish"], "queue")
    assert output == {
        "direction": "OUT",
        "type": "queue",
        "name": "control",
        "queueName": "upgrader-control",
        "connection": "AzureWebJobsStorage",
    }


def test_queue_triggers_and_their_poison_queues(bindings):
    triggers = {name: by_type(b, "queueTrigger") for name, b in bindings.items() if any(x["type"] == "queueTrigger" for x in b)}
    assert {name: t["queueName"] for name, t in triggers.items()} == {
        "control_step": "upgrader-control",
        "upgrade_targets": "upgrader-targets",
        "control_poison": "upgrader-control-poison",
        "upgrade_poison": "upgrader-targets-poison",
        "installation_events": "upgrader-notifications",
        "installation_events_poison": "upgrader-notifications-poison",
    }
    for trigger in triggers.values():
        assert trigger["connection"] == "AzureWebJobsStorage"
        assert QUEUE_NAME.match(trigger["queueName"])
        assert len(trigger["queueName"]) <= 63


def test_output_annotation_is_one_the_python_worker_accepts():
    source = (ROOT / "function_app.py").read_text()
    assert "func.Out[typing.List[str]]" in source
    load_app(ROOT / "function_app.py")  # the worker's annotation checks pass


def test_pep585_list_annotation_is_rejected_like_the_worker_does(tmp_path):
    source = (ROOT / "function_app.py").read_text().replace("func.Out[typing.List[str]]", "func.Out[list[str]]")
    (tmp_path / "host.json").write_text("{}")
    (tmp_path / "function_app.py").write_text(source)
    with pytest.raises(FunctionLoadError, match="does not match its Python annotation"):
        load_app(tmp_path / "function_app.py")


def test_entry_file_only_declares_and_delegates():
    tree = ast.parse((ROOT / "function_app.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            assert node.decorator_list, node.name
            [statement] = node.body
            call = statement.value if isinstance(statement, (ast.Return, ast.Expr)) else None
            assert isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute), node.name
            delegates = (
                "publishing",
                "runs",
                "apps",
                "health",
                "incoming",
                "openapi",
                "control",
                "targets",
                "notifications",
                "timers",
            )
            assert call.func.value.id in delegates, node.name


def test_host_json_queue_settings():
    host = json.loads((ROOT / "host.json").read_text())
    assert host["version"] == "2.0"
    assert host["extensionBundle"] == {"id": "Microsoft.Azure.Functions.ExtensionBundle", "version": "[4.*, 5.0.0)"}
    assert host["extensions"]["http"]["routePrefix"] == "api"
    queues = host["extensions"]["queues"]
    assert queues["messageEncoding"] == "base64"  # what our own senders produce
    assert 1 <= queues["batchSize"] <= 32
    assert queues["maxDequeueCount"] >= 1
    assert queues["newBatchThreshold"] >= 0


def test_sample_settings_cover_every_connection_and_setting(bindings):
    values = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"
    for name, function_bindings in bindings.items():
        for binding in function_bindings:
            if "connection" in binding:
                connection = binding["connection"]
                assert connection in values or any(k.startswith(connection + "__") for k in values), name
    for setting in ("GRAPH_BASE_URL", "GRAPH_MAX_RPS", "AZURE_CLIENT_ID", "DISCOVERY_GROUP_ID"):
        assert setting in values


def test_funcignore_keeps_local_tools_out_of_deployment():
    ignored = (ROOT / ".funcignore").read_text().split()
    for entry in ("tests", "devtools", "bench", "node_modules", ".venv", "local.settings.json"):
        assert entry in ignored or entry + "/" in ignored
