"""What every scope shares: an installation is read with one GET on the scope's resource
(`.../installedApps` filtered by app, with its definition) and upgraded with one POST; all scopes
POST into one Graph throttling bucket."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from shared.domain.app import TargetApp
from shared.graph.catalog import odata_string
from shared.graph.client import GraphClient, segment

INSTALLED_APPS_POST = "installedApps.post"  # Graph's one POST installedApps limit for chat, user and team


@dataclass(frozen=True)
class Installation:
    id: str
    version: str | None


def find_installation(body: dict | None, teams_app_id: str) -> Installation | None:
    for item in (body or {}).get("value", []):
        if not isinstance(item, dict) or not item.get("id"):
            continue
        app = item.get("teamsApp") or {}
        if app.get("id") and app["id"].lower() != teams_app_id.lower():
            continue  # the $filter should have excluded it
        return Installation(item["id"], (item.get("teamsAppDefinition") or {}).get("version"))
    return None


@dataclass(frozen=True, kw_only=True)
class Scope:
    """One scope's Graph calls and limits.

    `collection` is the path of a resource's installed apps, with `{id}` for the resource id;
    `spacing` is the least time between two requests on one resource (Graph allows one request per
    second on a chat and four on a team)."""

    name: str
    collection: str
    get_bucket: str
    spacing: float

    def installations(self, resource_id: str) -> str:
        return self.collection.format(id=segment(resource_id))

    def get_installation(
        self,
        graph: GraphClient,
        resource_id: str,
        teams_app_id: str,
        proceed: Callable[[], bool] | None = None,
        *,
        more: int | None = None,
    ) -> tuple[Installation | None, float]:
        """The app's installation on the resource (None: not installed), and when the answer came;
        `more`: how many of these GETs the caller sends next."""
        response = graph.get(
            self.installations(resource_id),
            params={"$expand": "teamsApp,teamsAppDefinition", "$filter": f"teamsApp/id eq {odata_string(teams_app_id)}"},
            bucket=self.get_bucket,
            proceed=proceed,
            more=more,
        )
        return find_installation(response.body, teams_app_id), response.received_at

    def post_upgrade(
        self,
        graph: GraphClient,
        resource_id: str,
        installation_id: str,
        app: TargetApp,
        not_before: float,
        proceed: Callable[[], bool] | None = None,
        *,
        more: int | None = None,
    ) -> None:
        """Upgrades the installation, not before `not_before`; `more`: how many upgrades the caller sends next."""
        graph.post(
            f"{self.installations(resource_id)}/{segment(installation_id)}/upgrade",
            app.upgrade_body(),
            bucket=INSTALLED_APPS_POST,
            not_before=not_before,
            retry_unavailable=False,  # a 5xx may have upgraded it: re-check with a GET before any retry
            proceed=proceed,
            more=more,
        )
