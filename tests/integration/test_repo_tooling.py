"""What a user who forks the project expects beside the code: CI and OIDC deployment workflows, a
dev container with Python, Node and azd, and a test.http whose calls the running app answers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import requests
import yaml

from shared.http.openapi import load
from tests.support import group_chats, org_app, people

ROOT = Path(__file__).resolve().parents[2]


def _workflow(name: str) -> dict:
    return yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())


def test_ci_runs_the_readme_test_command():
    ci = _workflow("ci.yml")
    steps = ci["jobs"]["test"]["steps"]
    assert {"run": "make test"} in steps
    python = next(s for s in steps if s.get("uses", "").startswith("actions/setup-python"))
    assert python["with"]["python-version"] == "3.11"  # what Flex Consumption runs (infra/app.bicep)
    assert ci["permissions"] == {"contents": "read"}
    assert "make test" in (ROOT / "README.md").read_text()


def test_deployment_signs_in_with_oidc_and_holds_no_secret():
    deploy = _workflow("deploy.yml")
    assert deploy["permissions"]["id-token"] == "write"
    text = (ROOT / ".github" / "workflows" / "deploy.yml").read_text()
    # the only secrets it reads are the app's notification settings: none signs in
    assert set(re.findall(r"secrets\.(\w+)", text)) == {"NOTIFICATION_CLIENT_STATE", "NOTIFICATION_FUNCTION_KEY"}
    assert "client-secret" not in text and "AZURE_CLIENT_SECRET" not in text and "AZURE_CREDENTIALS" not in text
    runs = [s.get("run", "") for s in deploy["jobs"]["deploy"]["steps"]]
    assert any("--federated-credential-provider github" in r for r in runs)
    assert any(r.startswith("azd provision") for r in runs) and any(r.startswith("azd deploy") for r in runs)
    assert deploy["jobs"]["deploy"]["env"]["AZURE_PRINCIPAL_TYPE"] == "ServicePrincipal"


def test_the_dev_container_has_python_node_and_azd_and_sets_up():
    container = json.loads((ROOT / ".devcontainer" / "devcontainer.json").read_text())
    assert "python:1-3.11" in container["image"]
    features = " ".join(container["features"])
    assert "features/node" in features and "azd" in features and "azure-cli" in features
    assert container["postCreateCommand"] == "make setup"


def _http_requests() -> list[tuple[str, str, dict, str]]:
    """(method, path, headers, body) of each request in test.http, variables left in."""
    found = []
    for block in (ROOT / "test.http").read_text().split("###")[1:]:
        lines = block.splitlines()[1:]
        method, url = lines[0].split(" ", 1)
        headers, body, i = {}, "", 1
        while i < len(lines) and lines[i].strip():
            name, value = lines[i].split(":", 1)
            headers[name.strip()] = value.strip()
            i += 1
        body = "\n".join(lines[i:]).strip()
        found.append((method, url.replace("{{baseUrl}}", ""), headers, body))
    return found


def test_test_http_covers_every_route_and_the_running_app_answers_each_call(api, tenant, emulator):
    document = load()
    calls = _http_requests()
    covered = {(m.lower(), re.sub(r"\?.*", "", p).replace("{{runId}}", "{runId}")) for m, p, _, _ in calls}
    documented = {(method, f"/api{path}") for path, ops in document["paths"].items() for method in ops}
    assert documented - {("post", "/api/notifications")} <= covered  # Graph, not an operator, calls that one

    app = org_app(tenant)
    group_chats(tenant, people(tenant, 2), 2, {app.id: "1.0.0"})
    finished = api.start(teamsAppId=app.id, dryRun=True)
    api.wait(finished)
    values = {"{{appId}}": app.id, "{{runId}}": finished, "{{key}}": "", "{{token}}": ""}
    for method, path, headers, body in calls:
        for name, value in values.items():
            path, body = path.replace(name, value), body.replace(name, value)
        headers = {k: v for k, v in headers.items() if k.lower() not in ("x-functions-key", "authorization")}
        response = requests.request(method, f"{api.base_url}{path}", headers=headers, data=body or None, timeout=30)
        operation = document["paths"][re.sub(r"^/api|\?.*$", "", path).replace(finished, "{runId}")][method.lower()]
        assert str(response.status_code) in operation["responses"], (method, path, response.text)
        assert response.status_code < 500, (method, path, response.text)
        if response.status_code == 202 and method == "POST" and path == "/api/publish":
            # one run per app at a time: let it finish before the next (a plan that waits for its window or an
            # operator, or a version the catalog does not list, is cancelled)
            run_id = response.json()["runId"]
            held = api.wait(run_id, until=lambda s: s["state"] in ("completed", "failed", "cancelled", "paused", "waiting"))
            if held["state"] in ("paused", "waiting"):
                assert api.act(run_id, "cancel").status_code == 202
            api.wait(run_id)
