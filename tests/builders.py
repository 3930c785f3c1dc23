"""Small tenants for tests."""

from __future__ import annotations

from devtools.tenant import CatalogApp, Chat, Team, Tenant, User


def org_app(tenant: Tenant, *, versions=("1.0.0", "1.1.0"), permissions=(), name: str = "Contoso Tasks") -> CatalogApp:
    return tenant.add_app(name, versions=versions, permissions=permissions)


def people(tenant: Tenant, count: int) -> list[str]:
    return [tenant.add_user().id for _ in range(count)]


def group_chats(tenant: Tenant, members: list[str], count: int, installed: dict[str, str] | None = None) -> list[Chat]:
    return [tenant.add_chat("group", members, installed=installed) for _ in range(count)]


def teams(tenant: Tenant, members: list[str], count: int, installed: dict[str, str] | None = None) -> list[Team]:
    return [tenant.add_team(members, installed=installed) for _ in range(count)]


def personal(tenant: Tenant, user_ids: list[str], installed: dict[str, str]) -> list[User]:
    """Installs the app in these users' personal scope."""
    for user_id in user_ids:
        tenant.users[user_id].installed.update(installed)
    return [tenant.users[u] for u in user_ids]
