"""The deploy workflow against the app, the infrastructure and the README's setup, statically (no
Azure or GitHub here). A CI provision replaces every app setting, so every setting the app reads must
travel from a repository variable (or secret) through infra/main.parameters.json and a Bicep parameter
into the app settings, or be derived by the deployment itself: a setting added to the app and forgotten
on the way fails here. And the job's OIDC token must carry a subject that the federated credentials
`azd pipeline config` creates trust."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from shared.foundation.settings import OWN_SETTINGS
from tests.support import app_settings, modules, parse, text, text_of

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
WORKFLOW = ROOT / ".github" / "workflows" / "deploy.yml"

# Derived by the deployment, never configured: every provision sets the same value again.
DERIVED = {
    "AZURE_CLIENT_ID": "identity.properties.clientId",  # the app's user-assigned identity
    "API_AUTH_TENANT_ID": "tenant().tenantId",  # the tenant deployed to
    "API_AUTH_AUTHORITY": "authority",  # this cloud's Entra ID endpoint
}
# For hosts without WEBSITE_HOSTNAME (the local host); on Azure the app builds the notification URL from
# WEBSITE_HOSTNAME and NOTIFICATION_FUNCTION_KEY.
LOCAL_ONLY = {"NOTIFICATION_URL"}
# What azd puts in its environment during the provision: the signed-in principal, and the preprovision hook's answer.
SET_DURING_PROVISION = {"AZURE_PRINCIPAL_ID", "KEY_VAULT_CREATE_MODE"}
# What `azd pipeline config` sets by itself (its own variables), beside azure.yaml's pipeline lists.
AZD_PIPELINE_VARIABLES = {"AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_SUBSCRIPTION_ID", "AZURE_ENV_NAME", "AZURE_LOCATION"}


def camel(setting: str) -> str:
    first, *rest = setting.lower().split("_")
    return first + "".join(part.title() for part in rest)


def parameters_file() -> dict[str, tuple[str, str | None]]:
    """parameter -> (environment variable, default) of every `${NAME}` or `${NAME=default}` value."""
    found = {}
    for name, entry in json.loads((INFRA / "main.parameters.json").read_text())["parameters"].items():
        match = re.fullmatch(r"\$\{(\w+)(?:=(.*))?\}", str(entry["value"]))
        assert match, f"{name}: every parameter comes from one environment variable"
        found[name] = (match.group(1), match.group(2))
    return found


def main_parameters() -> dict[str, tuple[bool, str | None]]:
    """parameter of main.bicep -> (secure, default as Bicep writes it)."""
    source = (INFRA / "main.bicep").read_text()
    found = {}
    for decorators, name, default in re.findall(r"((?:^@.*\n)*)^param (\w+) \w+(?: = (.*))?$", source, re.M):
        found[name] = ("@secure()" in decorators, default or None)
    return found


def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def deploy_env() -> dict[str, str]:
    return workflow()["jobs"]["deploy"]["env"]


def pipeline_lists() -> tuple[list[str], list[str]]:
    pipeline = yaml.safe_load((ROOT / "azure.yaml").read_text()).get("pipeline", {})
    return pipeline.get("variables", []), pipeline.get("secrets", [])


def test_every_setting_the_app_reads_travels_from_the_repository_to_the_app():
    configured = OWN_SETTINGS - set(DERIVED) - LOCAL_ONLY
    assert {"ROLLOUT", "CATALOG_WAIT", "RUN_RETENTION", "PAUSED_ALERT_AFTER"} <= configured
    settings, given, declared, env = app_settings(), parameters_file(), main_parameters(), deploy_env()
    variables, secrets = pipeline_lists()
    app_module = text(next(body for symbol, body in modules(parse(INFRA / "main.bicep")) if symbol == "app"))
    secrets_module = text(next(body for symbol, body in modules(parse(INFRA / "app.bicep")) if symbol == "secrets"))
    app_params = set(re.findall(r"^param (\w+)", (INFRA / "app.bicep").read_text(), re.M))
    missing = []
    for setting in sorted(configured):
        param = camel(setting)
        secure = declared.get(param, (False, None))[0]
        if param not in declared or given.get(param, (None,))[0] != setting:
            missing.append(f"{setting}: param {param} in main.bicep and main.parameters.json (${{{setting}...}})")
        if param not in app_params or not re.search(rf"^\s+{param}: {param}$", app_module, re.M):
            missing.append(f"{setting}: {param} passed to app.bicep")
        if secure:  # a Key Vault reference to the secret the parameter is stored in
            wired = setting in settings and re.search(rf"^\s+{param}: {param}$", secrets_module, re.M)
        else:
            wired = text_of(settings.get(setting)) == param
        if not wired:
            missing.append(f"{setting}: app setting from {param}")
        source = "secrets" if secure else "vars"
        if env.get(setting) != f"${{{{ {source}.{setting} }}}}":
            missing.append(f"{setting}: deploy.yml env {setting}: ${{{{ {source}.{setting} }}}}")
        if setting not in (secrets if secure else variables):
            missing.append(f"{setting}: azure.yaml pipeline.{'secrets' if secure else 'variables'}")
    assert missing == []
    for setting, expression in DERIVED.items():
        assert text_of(settings[setting]) == expression, setting


def test_a_ci_provision_is_given_every_parameter_and_nothing_else():
    env = deploy_env()
    needed = {variable for variable, _ in parameters_file().values()}
    assert needed - SET_DURING_PROVISION <= set(env), sorted(needed - SET_DURING_PROVISION - set(env))
    assert set(env) - needed <= AZD_PIPELINE_VARIABLES, "an env line that no parameter reads"
    variables, secrets = pipeline_lists()
    from_repository = {name for name, value in env.items() if value == f"${{{{ vars.{name} }}}}"}
    assert from_repository == set(variables) | AZD_PIPELINE_VARIABLES
    assert {name for name, value in env.items() if value == f"${{{{ secrets.{name} }}}}"} == set(secrets)


def test_an_unset_repository_variable_means_the_parameters_default():
    # an unset variable reaches azd as an empty string, which `${NAME=default}` replaces with the default
    declared = main_parameters()
    for param, (variable, default) in parameters_file().items():
        if variable in ("AZURE_ENV_NAME", "AZURE_LOCATION", "AZURE_PRINCIPAL_ID"):
            continue  # always set
        assert default is not None, f"{param}: ${{{variable}=...}} needs a default"
        bicep_default = declared[param][1]
        assert bicep_default is not None and bicep_default.strip("'") == default, (param, bicep_default, default)


def pipeline_section() -> str:
    readme = (ROOT / "docs" / "operations.md").read_text()
    return " ".join(readme[readme.index("**From a pipeline.**") :].split("\n\n")[0].split())


def subjects_the_readme_setup_trusts(repository: str) -> set[str]:
    """The token subjects the README's setup (`azd pipeline config`, run on main) creates credentials for."""
    section = pipeline_section()
    assert "`azd pipeline config --provider github` creates" in section
    created = section.split(" and copies ")[0]  # what it creates, before what it copies
    subjects = re.findall(r"`(repo:<owner>/<repo>:[^`]+)`", created)
    return {s.replace("<owner>/<repo>", repository).replace("<the branch you ran it on>", "main") for s in subjects}


ANY_BRANCH = "refs/heads/<any branch>"


def subjects_the_workflow_presents(repository: str, spec: dict) -> set[str]:
    """The `sub` of the OIDC token each job that may sign in gets, per GitHub's subject formats."""
    triggers = spec.get("on", spec.get(True))  # YAML 1.1 reads the key `on` as true
    subjects = set()
    for job in spec["jobs"].values():
        if (job.get("permissions") or spec.get("permissions", {})).get("id-token") != "write":
            continue
        environment = job.get("environment")
        if environment:
            name = environment["name"] if isinstance(environment, dict) else environment
            subjects.add(f"repo:{repository}:environment:{name}")
            continue
        refs = {f"refs/heads/{branch}" for branch in (triggers.get("push") or {}).get("branches", [])}
        if "workflow_dispatch" in triggers:
            refs.add(ANY_BRANCH)  # started by hand on whichever branch is chosen
        guard = re.fullmatch(r"github\.ref == '(refs/heads/[^']+)'", job.get("if", "").strip())
        if guard:  # the job runs on that ref only
            refs = {guard.group(1)} if refs & {guard.group(1), ANY_BRANCH} else set()
        subjects |= {f"repo:{repository}:ref:{ref}" for ref in refs}
    return subjects


def test_the_workflow_signs_in_with_a_subject_the_readme_setup_trusts():
    repository = "contoso/teams-app-upgrader"
    presented = subjects_the_workflow_presents(repository, workflow())
    trusted = subjects_the_readme_setup_trusts(repository)
    assert trusted == {
        f"repo:{repository}:ref:refs/heads/main",  # azd: the branch it ran on, and main
        f"repo:{repository}:pull_request",
    }
    assert presented == {f"repo:{repository}:ref:refs/heads/main"}
    assert presented <= trusted, f"no federated credential for {sorted(presented - trusted)} (AADSTS700213)"


def test_a_job_in_a_github_environment_or_run_from_any_branch_presents_a_subject_nothing_trusts():
    trusted = subjects_the_readme_setup_trusts("o/r")
    in_environment = workflow()
    in_environment["jobs"]["deploy"]["environment"] = "production"  # as the workflow was
    assert subjects_the_workflow_presents("o/r", in_environment) == {"repo:o/r:environment:production"}
    unguarded = workflow()
    del unguarded["jobs"]["deploy"]["if"]
    assert f"repo:o/r:ref:{ANY_BRANCH}" in subjects_the_workflow_presents("o/r", unguarded)
    for spec in (in_environment, unguarded):
        assert not subjects_the_workflow_presents("o/r", spec) <= trusted
