"""Chats: an installation per chat; discovery lists each user's chats filtered by the app (Graph
has no list of an app's installations), and a group chat is listed under each member."""

from __future__ import annotations

from shared.graph.catalog import odata_string
from shared.graph.client import GraphClient, segment
from shared.scopes.base import Scope

CHAT = Scope(name="chat", collection="/chats/{id}/installedApps", get_bucket="installedApps.get", spacing=1.02)
LIST_CHATS_BUCKET = "teams.get"  # "Other GET API calls for Teams", which includes List chats
USER_SPACING = 0.21  # Graph allows five List chats requests per second per user
CHATS_PAGE_SIZE = 50  # the maximum $top of List chats


def chats_with_app(graph: GraphClient, user_id: str, teams_app_id: str) -> list[str]:
    """All chats of one user where the app is installed (every page)."""
    chat_ids: list[str] = []
    pages = graph.pages(
        f"/users/{segment(user_id)}/chats",
        params={
            "$filter": f"installedApps/any(a:a/teamsApp/id eq {odata_string(teams_app_id)})",
            "$top": CHATS_PAGE_SIZE,
        },
        bucket=LIST_CHATS_BUCKET,
        spacing=USER_SPACING,
    )
    for page in pages:
        chat_ids.extend(c["id"] for c in page if isinstance(c.get("id"), str))
    return chat_ids
