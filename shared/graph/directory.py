"""Reading the directory: users, or the transitive user members of a group, one page at a time."""

from __future__ import annotations

from shared.graph.client import GraphClient, segment

DIRECTORY_BUCKET = "directory"
USERS_PAGE_SIZE = 999


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
