"""Finding the chats where an app is installed: Graph has no list of installations, so we list
users (or a group's transitive members) and, per user, their chats filtered by installed app."""

from __future__ import annotations

from shared.catalog import odata_string
from shared.graph import GraphClient, segment

DIRECTORY_BUCKET = "directory"
TEAMS_GET_BUCKET = "teams.get"  # "Other GET API calls for Teams", which includes List chats
USER_SPACING = 0.21  # Graph allows five List chats requests per second per user
USERS_PAGE_SIZE = 999
CHATS_PAGE_SIZE = 50  # the maximum $top of List chats


def list_users_page(graph: GraphClient, *, group_id: str | None, cursor: str | None) -> tuple[list[str], str | None]:
    """One page of user ids and the link to the next page (None at the end)."""
    if cursor:
        response = graph.send("GET", cursor, bucket=DIRECTORY_BUCKET)
    elif group_id:
        response = graph.get(
            f"/groups/{segment(group_id)}/transitiveMembers/microsoft.graph.user",
            params={"$select": "id", "$top": USERS_PAGE_SIZE},
            bucket=DIRECTORY_BUCKET,
        )
    else:
        response = graph.get("/users", params={"$select": "id", "$top": USERS_PAGE_SIZE}, bucket=DIRECTORY_BUCKET)
    body = response.body or {}
    ids = [u["id"] for u in body.get("value", []) if isinstance(u, dict) and isinstance(u.get("id"), str)]
    return ids, body.get("@odata.nextLink")


def chats_with_app(graph: GraphClient, user_id: str, teams_app_id: str) -> list[str]:
    """All chats of one user where the app is installed (every page)."""
    chat_ids: list[str] = []
    pages = graph.pages(
        f"/users/{segment(user_id)}/chats",
        params={
            "$filter": f"installedApps/any(a:a/teamsApp/id eq {odata_string(teams_app_id)})",
            "$top": CHATS_PAGE_SIZE,
        },
        bucket=TEAMS_GET_BUCKET,
        spacing=USER_SPACING,
    )
    for page in pages:
        chat_ids.extend(c["id"] for c in page if isinstance(c.get("id"), str))
    return chat_ids
