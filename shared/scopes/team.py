"""Teams: an installation per team. Discovery lists every team (GET /teams), or, within a
discovery group, the teams its members have joined; an archived team answers 403 to both calls
on its installations."""

from __future__ import annotations

from shared.graph.client import GraphClient, segment
from shared.scopes.base import Scope

TEAM = Scope(name="team", collection="/teams/{id}/installedApps", get_bucket="installedApps.teamUser.get", spacing=0.26)
LIST_TEAMS_BUCKET = "teams.get"  # GET /teams has no row of its own: "Other GET API calls for Teams"
JOINED_TEAMS_BUCKET = "joinedTeams.get"  # "GET /teams/{team-id}, joinedTeams"


def list_teams_page(graph: GraphClient, cursor: str | None) -> tuple[list[str], str | None]:
    """One page of team ids and the link to the next page (None at the end)."""
    if cursor:
        response = graph.send("GET", cursor, bucket=LIST_TEAMS_BUCKET)
    else:
        # no $top: its maximum is undocumented, and Graph pages with @odata.nextLink anyway
        response = graph.get("/teams", params={"$select": "id"}, bucket=LIST_TEAMS_BUCKET)
    body = response.body or {}
    ids = [t["id"] for t in body.get("value", []) if isinstance(t, dict) and isinstance(t.get("id"), str)]
    return ids, body.get("@odata.nextLink")


def joined_teams(graph: GraphClient, user_id: str) -> list[str]:
    """The teams a user is a direct member of (Graph answers at most 999, without paging)."""
    ids: list[str] = []
    for page in graph.pages(f"/users/{segment(user_id)}/joinedTeams", params=None, bucket=JOINED_TEAMS_BUCKET):
        ids.extend(t["id"] for t in page if isinstance(t.get("id"), str))
    return ids
