"""Reading the tenant app catalog: the app by catalog id or manifest id, with its definitions."""

from __future__ import annotations

from shared.domain.app import TargetApp, choose_target
from shared.foundation.errors import RunFailure

APP_CATALOG_BUCKET = "appCatalogs.get"


def odata_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def find_app(graph, *, teams_app_id: str | None = None, external_id: str | None = None) -> dict:
    if teams_app_id:
        query = f"id eq {odata_string(teams_app_id)}"
        described = f"id {teams_app_id}"
    else:
        query = f"externalId eq {odata_string(external_id or '')}"
        described = f"externalId {external_id}"
    apps = graph.get(
        "/appCatalogs/teamsApps", params={"$filter": query, "$expand": "appDefinitions"}, bucket=APP_CATALOG_BUCKET
    ).body
    apps = [a for a in (apps or {}).get("value", []) if isinstance(a, dict) and a.get("id")]
    if len(apps) > 1:
        apps = [a for a in apps if a.get("distributionMethod") == "organization"] or apps
    if not apps:
        raise RunFailure("appNotFound", f"No app with {described} in the tenant app catalog.")
    if len(apps) > 1:
        raise RunFailure("appAmbiguous", f"Several catalog apps have {described}; publish by teamsAppId instead.")
    return apps[0]


def resolve_target(graph, *, teams_app_id: str | None, external_id: str | None, version: str | None) -> TargetApp:
    return choose_target(find_app(graph, teams_app_id=teams_app_id, external_id=external_id), version)
