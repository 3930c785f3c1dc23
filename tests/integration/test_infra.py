"""Offline checks of the infrastructure, since Bicep cannot be compiled here: every file parses
(tree-sitter-bicep), and what breaks deployments is asserted on the syntax tree: queue and table
endpoints, no keys or connection strings for storage, the role assignments, every app setting the
code reads, monitoring that only references fields the code logs."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from tree_sitter import Node

from shared.foundation.telemetry import LOGGER
from tests.support import INFRA, app_settings, modules, parse, properties, resource, resources, text, text_of

ROOT = Path(__file__).resolve().parents[2]
ROLES = {
    "storageBlobDataOwner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "storageQueueDataContributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "storageTableDataContributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "monitoringMetricsPublisher": "3913510d-42f4-4e42-8a64-420c390055eb",
    "keyVaultSecretsUser": "4633458b-17de-408a-b874-0445c86b69e6",
}


@pytest.fixture(scope="module")
def app() -> Node:
    return parse(INFRA / "app.bicep")


def test_every_bicep_file_parses_without_errors():
    files = sorted(INFRA.rglob("*.bicep"))
    assert {f.name for f in files} >= {"main.bicep", "app.bicep", "monitoring.bicep"}
    for path in files:
        root = parse(path)
        assert not root.has_error, f"{path.name} has a syntax error"


def test_storage_has_shared_keys_off_and_queue_and_table_services(app):
    [(_, storage)] = resource(app, "Microsoft.Storage/storageAccounts@")
    props = properties(properties(storage)["properties"])
    assert text(props["allowSharedKeyAccess"]) == "false"
    assert text(props["allowBlobPublicAccess"]) == "false"
    nested = {type_ for _, type_, _ in resources(app)}
    assert {"queueServices", "tableServices", "blobServices"} <= nested


def test_no_keys_or_connection_strings_anywhere():
    for path in INFRA.rglob("*.bicep"):
        source = path.read_text().lower()  # Bicep function names ignore case
        for forbidden in ("listKeys(", "AccountKey=", "DefaultEndpointsProtocol", "SharedAccessSignature", "primaryKey"):
            assert forbidden.lower() not in source, f"{path.name} contains {forbidden}"
    settings = app_settings()
    assert "AzureWebJobsStorage" not in settings, "storage must use identity-based AzureWebJobsStorage__* settings"
    assert text_of(settings["AzureWebJobsStorage__credential"]) == "'managedidentity'"


def test_each_role_is_assigned(app):
    sources = {p.name: p.read_text() for p in INFRA.glob("*.bicep")}
    for name, guid in ROLES.items():
        assert any(f"{name}: '{guid}'" in t or f"{name} = '{guid}'" in t for t in sources.values()), name
    assigned = [text(body) for _, body in resource(app, "Microsoft.Authorization/roleAssignments@")]
    for name in set(ROLES) - {"keyVaultSecretsUser"}:
        assert any(f"roles.{name})" in body and "identity.properties.principalId" in body for body in assigned), name
    [(_, reader)] = resource(parse(INFRA / "secrets.bicep"), "Microsoft.Authorization/roleAssignments@")
    assert "keyVaultSecretsUser)" in text(reader) and "principalId: identityPrincipalId" in text(reader)
    [(_, module)] = [(s, b) for s, b in modules(app) if s == "secrets"]
    assert "identityPrincipalId: identity.properties.principalId" in text(module)


def settings_the_code_reads() -> set[str]:
    names = set()
    source = (ROOT / "shared" / "foundation" / "settings.py").read_text()
    names |= set(re.findall(r'(?:_float|_guid|_guids|_bool|_choice)\(env, "([A-Z][A-Z0-9_]+)"', source))
    names |= set(re.findall(r'env\.get\("([A-Z][A-Z0-9_]+)"', source))
    names |= set(re.findall(r"%([A-Z][A-Z0-9_]+)%", (ROOT / "function_app.py").read_text()))
    names -= {"WEBSITE_HOSTNAME", "NOTIFICATION_URL"}  # set by the platform / an alternative to the function key
    names |= {
        f"AzureWebJobsStorage__{k}" for k in ("credential", "clientId", "blobServiceUri", "queueServiceUri", "tableServiceUri")
    }
    names |= {
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
        "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY",
        "PYTHON_APPLICATIONINSIGHTS_LOGGER_NAME",
    }
    return names


def test_every_setting_the_code_reads_is_set():
    settings = app_settings()
    missing = settings_the_code_reads() - set(settings)
    assert not missing, f"app settings missing from infra/app.bicep: {sorted(missing)}"
    assert text_of(settings["PYTHON_APPLICATIONINSIGHTS_LOGGER_NAME"]) == f"'{LOGGER}'"  # the logger the events use
    sample = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    schedules = {n for n in settings_the_code_reads() if n.endswith("_SCHEDULE")}
    assert schedules <= set(sample), "local.settings.sample.json lacks a timer schedule"


def test_flex_consumption_python_with_the_identity(app):
    [(_, plan)] = resource(app, "Microsoft.Web/serverfarms@")
    assert "'FC1'" in text(properties(plan)["sku"]) and "'FlexConsumption'" in text(properties(plan)["sku"])
    [(_, site)] = resource(app, "Microsoft.Web/sites@")
    config = text(properties(properties(site)["properties"])["functionAppConfig"])
    assert re.search(r"name: 'python'\s+version: '3\.11'", config), "runtime must match what CI tests (Python 3.11)"
    assert "type: 'UserAssignedIdentity'" in config
    assert text(properties(site)["kind"]) == "'functionapp,linux'"
    settings = app_settings()
    assert "Authorization=AAD" in text_of(settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"])


def test_application_insights_takes_entra_tokens_only(app):
    [(_, insights)] = resource(app, "Microsoft.Insights/components@")
    assert text(properties(properties(insights)["properties"])["DisableLocalAuth"]) == "true"


def test_parameters_file_matches_main():
    main = (INFRA / "main.bicep").read_text()
    declared = set(re.findall(r"^param (\w+)", main, re.M))
    given = set(json.loads((INFRA / "main.parameters.json").read_text())["parameters"])
    assert given <= declared
    assert {"environmentName", "location"} <= given
    assert "azd-service-name': 'api'" in (INFRA / "app.bicep").read_text()
    assert re.search(r"^services:\n  api:\n", (ROOT / "azure.yaml").read_text(), re.M)


def logged_events_and_properties() -> tuple[set[str], set[str]]:
    events, props = set(), {"event"}
    for path in (ROOT / "shared").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            # event("name", ...), and log_control("name", ...) for the events operators cause
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("event", "log_control") and node.args:
                if isinstance(node.args[0], ast.Constant):
                    events.add(node.args[0].value)
                props |= {k.arg for k in node.keywords if k.arg and k.arg != "level"}
    return events, props


def monitoring_queries() -> dict[str, str]:
    queries = {p.name: p.read_text() for p in (INFRA / "monitoring" / "queries").glob("*.kql")}
    workbook = json.loads((INFRA / "monitoring" / "workbook.json").read_text())
    for item in workbook["items"]:
        if item["type"] == 3:
            queries[f"workbook:{item['name']}"] = item["content"]["query"]
    for i, query in enumerate(re.findall(r"query: '(.*?)'\n", (INFRA / "monitoring.bicep").read_text())):
        queries[f"alert:{i}"] = query
    return queries


def test_workbook_queries_and_alerts_reference_only_what_the_code_logs():
    events, props = logged_events_and_properties()
    assert {"targetOutcome", "runQueued", "throttled", "queueDepth", "poisoned"} <= events
    queries = monitoring_queries()
    assert len([q for q in queries if q.startswith("alert:")]) == 5
    for name, query in queries.items():
        used = set(re.findall(r"Properties\.(\w+)", query))
        assert used, name
        assert used <= props, f"{name} uses {sorted(used - props)}, which the code never logs"
        for clause in re.findall(r"Properties\.event\)\s*(?:==|in)\s*\(?([^)\n]*)", query):
            named = set(re.findall(r'"(\w+)"', clause))
            assert named <= events, f"{name} filters on events the code never logs: {sorted(named - events)}"


def test_alerts_cover_failed_targets_poison_queues_missing_permissions_and_runs_that_wait_or_stall():
    queries = [q for n, q in monitoring_queries().items() if n.startswith("alert:")]
    assert any('"runPausedTooLong"' in q for q in queries) and any('"runStalled"' in q for q in queries)
    assert any('"targetOutcome"' in q and '"failed"' in q for q in queries)
    assert any('"poisoned"' in q and "-poison" in q for q in queries)
    assert any('"runFailed"' in q and '"missingPermissions"' in q for q in queries)


def _depends_on(body: Node) -> set[str]:
    node = properties(body).get("dependsOn")
    return set(re.findall(r"\w+", text(node))) if node is not None else set()


def test_key_vault_references_are_set_only_after_the_identity_may_read_the_secrets(app):
    # the module that grants Key Vault Secrets User on the vault
    readers = {
        symbol
        for symbol, body in modules(app)
        if any(
            "keyVaultSecretsUser" in text(b)
            for _, b in resource(parse(INFRA / f"{symbol}.bicep"), "Microsoft.Authorization/roleAssignments@")
        )
    }
    assert readers == {"secrets"}
    source = (INFRA / "app.bicep").read_text()
    referencing_vars = set(re.findall(r"^var (\w+) = [^\n]*\n?(?:[^\n]*\n)*?[^\n]*@Microsoft\.KeyVault\(", source, re.M))

    def references(body: Node) -> bool:
        return "@Microsoft.KeyVault(" in text(body) or any(v in text(body) for v in referencing_vars)

    # the innermost resources that set them (a site's nested appsettings, not the site around it)
    settings = [
        (symbol, body)
        for symbol, _, body in resources(app)
        if references(body) and not any(references(inner) for _, _, inner in resources(body))
    ]
    assert settings, "the notification secrets are Key Vault references in the app settings"
    for symbol, body in settings:
        assert readers <= _depends_on(body), f"{symbol} must depend on {sorted(readers)}"


def test_role_assignments_for_the_deploying_principal_take_its_type_from_azd(app):
    main = (INFRA / "main.bicep").read_text()
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert parameters["principalType"]["value"] == "${AZURE_PRINCIPAL_TYPE=User}"
    assert re.search(r"@allowed\(\['User', 'ServicePrincipal', 'Group'\]\)\n[^\n]*\nparam principalType string", main)
    developer = [
        body for _, body in resource(app, "Microsoft.Authorization/roleAssignments@") if "principalId: principalId" in text(body)
    ]
    assert len(developer) == 3  # blobs (the local host's locks and timers), queues, tables
    for body in developer:
        assert text(properties(properties(body)["properties"])["principalType"]) == "principalType"
    assert any("roles.storageBlobDataOwner" in text(body) for body in developer)
    for _, body in resource(app, "Microsoft.Authorization/roleAssignments@"):
        assert "principalType: 'User'" not in text(body)


def test_alerts_deploy_before_the_workspace_has_any_app_traces():
    tree = parse(INFRA / "monitoring.bicep")
    alerts = resource(tree, "Microsoft.Insights/scheduledQueryRules@")
    assert len(alerts) == 5
    for symbol, body in alerts:
        assert text(properties(properties(body)["properties"]).get("skipQueryValidation")) == "true", symbol


def test_regions_are_limited_to_flex_consumption_and_a_deleted_vault_is_recovered(app):
    main = (INFRA / "main.bicep").read_text()
    allowed = re.search(
        r"@allowed\(\[\n(.*?)\]\)\n@metadata\(\{ azd: \{ type: 'location' \} \}\)\nparam location string", main, re.S
    )
    assert allowed, "location must list the Flex Consumption regions, for azd's region prompt"
    regions = re.findall(r"'(\w+)'", allowed.group(1))
    assert {"eastus", "westeurope", "swedencentral"} <= set(regions) and "westindia" not in regions
    [(_, vault)] = resource(parse(INFRA / "secrets.bicep"), "Microsoft.KeyVault/vaults@")
    assert text(properties(properties(vault)["properties"])["createMode"]) == "createMode"
    assert text(properties(properties(vault)["properties"])["enablePurgeProtection"]) == "true"
    [(_, module)] = [(s, b) for s, b in modules(app) if s == "secrets"]
    assert "createMode: keyVaultCreateMode" in text(module)
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert parameters["keyVaultCreateMode"]["value"] == "${KEY_VAULT_CREATE_MODE=default}"
    # what the preprovision hook looks for among deleted vaults, since azd down removes the outputs
    assert "name: 'rg-${environmentName}'" in main and "var tags = { 'azd-env-name': environmentName }" in main
    assert text(properties(vault)["tags"]) == "tags" and text(properties(vault)["name"]).startswith("'kv-upg-")


def test_the_runs_query_has_one_row_per_run():
    for name, query in monitoring_queries().items():
        if "runQueued" in query and "summarize" in query:
            groups = re.findall(r"\n\s*by (.+)\n", query.split("| join")[0])
            assert groups == ["runId"], f"{name} groups by {groups}: a run whose events carry other keys splits in rows"


# the AppTraces table of a workspace-based Application Insights resource (Azure Monitor reference)
APP_TRACES = [
    *[
        (c, "string")
        for c in [
            "TenantId",
            "OperationName",
            "OperationId",
            "ParentId",
            "SyntheticSource",
            "SessionId",
            "UserId",
            "UserAuthenticatedId",
            "UserAccountId",
            "AppVersion",
            "AppRoleName",
            "AppRoleInstance",
            "ClientType",
            "ClientModel",
            "ClientOS",
            "ClientIP",
            "ClientCity",
            "ClientStateOrProvince",
            "ClientCountryOrRegion",
            "ClientBrowser",
            "ResourceGUID",
            "IKey",
            "SDKVersion",
            "ReferencedItemId",
            "ReferencedType",
            "SourceSystem",
            "Type",
            "_ResourceId",
            "Message",
        ]
    ],
    ("TimeGenerated", "datetime"),
    ("SeverityLevel", "int"),
    ("ItemCount", "int"),
    ("Properties", "dynamic"),
    ("Measurements", "dynamic"),
]


def kql_errors(queries: dict[str, str], tmp_path: Path) -> dict[str, list[str]]:
    """Each query parsed and bound by Microsoft's Kusto parser against the AppTraces schema."""
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"AppTraces": APP_TRACES}))
    result = subprocess.run(
        ["node", str(ROOT / "tests" / "kql_check.js"), str(schema)],
        input=json.dumps([{"name": n, "query": q} for n, q in queries.items()]),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return {r["name"]: [e["message"] for e in r["errors"]] for r in json.loads(result.stdout)}


def test_every_monitoring_query_parses_and_binds_with_the_kusto_parser(tmp_path):
    queries = monitoring_queries()
    assert len(queries) >= 10
    controls = {
        "unknown column": "AppTraces | where Foo == 1",
        "syntax": "AppTraces | where (",
        "unknown function": "AppTraces | extend x = tostrin(Message)",
    }
    found = kql_errors({**queries, **controls}, tmp_path)
    assert all(found[name] for name in controls), {name: found[name] for name in controls}  # the parser is at work
    assert {name: errors for name, errors in found.items() if errors and name not in controls} == {}


CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"  # installed by make test, apart from the app's environment


def test_checkov_finds_nothing_and_every_suppression_says_why():
    assert CHECKOV.exists(), "run make test: it installs checkov (requirements-checkov.txt) into .venv-checkov"
    result = subprocess.run(
        [str(CHECKOV), "-d", str(INFRA), "--framework", "bicep", "--compact", "--skip-download", "-o", "json"],
        env={**os.environ, "CKV_PARSE_ERROR_FAIL": "true"},  # a file checkov cannot parse is a failure, not a pass
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(result.stdout)
    failed = [(c["check_id"], c["file_path"], c["resource"]) for c in report["results"].get("failed_checks", [])]
    assert (result.returncode, failed) == (0, []), result.stderr[-2000:]
    assert report["summary"]["parsing_errors"] == 0 and report["summary"]["resource_count"] >= 40
    skips = 0
    for path in INFRA.rglob("*.bicep"):
        source = path.read_text()
        assert "#checkov" not in source, f"{path.name}: Bicep comments are //, the compiler rejects #"
        for check, reason in re.findall(r"//\s*checkov:skip=(CKV_\w+)(?::(.*))?", source):
            assert reason and len(reason.strip()) >= 20, f"{path.name}: {check} is suppressed without a reason"
            skips += 1
    assert skips == report["summary"]["skipped"]


def test_the_site_sets_no_property_flex_consumption_does_not_take(app):
    [(_, site)] = resource(app, "Microsoft.Web/sites@")
    site_config = properties(properties(properties(site)["properties"])["siteConfig"])
    assert "ftpsState" not in site_config  # no FTP publishing on Flex Consumption: the property is not supported
    assert set(site_config) <= {"minTlsVersion", "http20Enabled", "healthCheckPath"}


# Microsoft.Insights/scheduledQueryRules@2023-12-01 (generally available), from its published resource schema
SCHEDULED_QUERY_RULE_API = "2023-12-01"
SCHEDULED_QUERY_RULE_PROPERTIES = {
    "actions", "autoMitigate", "checkWorkspaceAlertsStorageConfigured", "criteria", "description", "displayName", "enabled",
    "evaluationFrequency", "muteActionsDuration", "overrideQueryTimeRange", "ruleResolveConfiguration", "scopes", "severity",
    "skipQueryValidation", "targetResourceTypes", "windowSize",
}  # fmt: skip
SCHEDULED_QUERY_CONDITION = {
    "dimensions", "failingPeriods", "metricMeasureColumn", "metricName", "operator", "query", "resourceIdColumn", "threshold",
    "timeAggregation",
}  # fmt: skip


def test_alerts_use_the_generally_available_api_and_only_properties_it_has():
    tree = parse(INFRA / "monitoring.bicep")
    alerts = [
        (symbol, type_, body)
        for symbol, type_, body in resources(tree)
        if type_.startswith("Microsoft.Insights/scheduledQueryRules@")
    ]
    assert len(alerts) == 5
    for symbol, type_, body in alerts:
        assert type_ == f"Microsoft.Insights/scheduledQueryRules@{SCHEDULED_QUERY_RULE_API}", symbol
        rule = properties(properties(body)["properties"])
        assert set(rule) <= SCHEDULED_QUERY_RULE_PROPERTIES, (symbol, sorted(set(rule) - SCHEDULED_QUERY_RULE_PROPERTIES))
        [condition] = [c for c in properties(rule["criteria"])["allOf"].children if c.type == "object"]
        assert set(properties(condition)) <= SCHEDULED_QUERY_CONDITION, symbol


def test_with_notifications_one_instance_of_the_http_group_is_always_ready(app):
    source = (INFRA / "app.bicep").read_text()
    assert "var notificationsEnabled = !empty(notificationClientState) && !empty(notificationFunctionKey)" in source
    [(_, type_, site)] = [(s, t, b) for s, t, b in resources(app) if t.startswith("Microsoft.Web/sites@")]
    assert type_.split("@")[1] >= "2024-04-01"  # functionAppConfig.scaleAndConcurrency.alwaysReady is in this version
    config = properties(properties(properties(site)["properties"])["functionAppConfig"])
    always_ready = properties(config["scaleAndConcurrency"])["alwaysReady"]
    assert always_ready.type == "ternary_expression"
    condition, when_on, when_off = (c for c in always_ready.children if c.type not in ("?", ":"))
    assert text(condition) == "notificationsEnabled"
    [group] = [c for c in when_on.children if c.type == "object"]
    assert {k: text(v) for k, v in properties(group).items()} == {"name": "'http'", "instanceCount": "1"}
    assert text(when_off) == "[]"  # without notifications nothing is billed while idle
    memory = int(text(properties(config["scaleAndConcurrency"])["instanceMemoryMB"]))
    readme = " ".join((ROOT / "docs" / "operations.md").read_text().split())
    assert f"the always-ready instance ({memory:,} MB) is billed around the clock" in readme  # what it costs is said
