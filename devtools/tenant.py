"""The emulated tenant: users, groups, chats, teams, the org app catalog and the app's installations
in chats, teams and users' personal scope.

Ids follow Graph's documented formats: user, team and app ids are GUIDs; group chats are
`19:<32 hex>@thread.v2`, meeting chats `19:meeting_<base64>@thread.v2`, one-on-one chats
`19:<user>_<user>@unq.gbl.spaces`; an installation id is base64("{chatId|teamId|userId}##{teamsAppId}")
and a definition id base64("{teamsAppId}##{version}##{State}").
"""

from __future__ import annotations

import base64
import random
import threading
import time
import uuid
from dataclasses import dataclass, field

from devtools.app_versions import is_newer, newest, parse


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@dataclass
class Definition:
    app_id: str
    version: str
    state: str = "published"  # published | submitted | rejected
    permissions: list[tuple[str, str]] = field(default_factory=list)  # (permissionValue, permissionType)
    listed_from: float = 0.0  # epoch seconds: the catalog list shows it from then on (it lags a publish)

    def __post_init__(self) -> None:
        parse(self.version)  # the catalog holds manifest versions only (InvalidVersion otherwise)

    @property
    def id(self) -> str:
        return b64(f"{self.app_id}##{self.version}##{self.state.title()}")


@dataclass
class CatalogApp:
    id: str
    external_id: str
    display_name: str
    definitions: list[Definition] = field(default_factory=list)
    distribution: str = "organization"

    def newest_published(self) -> Definition | None:
        published = {d.version: d for d in self.definitions if d.state == "published"}
        return published[newest(published)] if published else None


@dataclass
class Refusal:
    """What Graph answers the upgrade POSTs on one chat, team or user instead of 204: 400 BadRequest
    with `message`, the next `times` times (None: every time). `applied`: the upgrade went through
    before the failure was answered (the installation is at the new version all the same)."""

    message: str
    times: int | None = 1
    applied: bool = False

    def take(self) -> bool:
        """True when this POST is refused (and counts it)."""
        if self.times is None:
            return True
        if self.times <= 0:
            return False
        self.times -= 1
        return True


class Installable:
    """What a chat, a team and a user (personal scope) have in common: apps installed in them."""

    id: str
    installed: dict[str, str]  # app id -> installed version
    blocked: set[str]  # app ids blocked by policy here
    installation_ids: dict[str, str]  # app id -> an id other than the usual form
    refusal: Refusal | None  # what the upgrade POSTs here are answered, if not 204

    def installation_id(self, app_id: str) -> str:
        return self.installation_ids.get(app_id) or b64(f"{self.id}##{app_id}")

    def app_of(self, installation_id: str) -> str | None:
        """The id of the app installed here under `installation_id`, if any."""
        return next((a for a in self.installed if self.installation_id(a) == installation_id), None)


@dataclass
class User(Installable):
    id: str
    display_name: str
    upn: str
    chats_error: tuple[int, str, str] | None = None  # what List chats answers for this user, if not 200
    installed: dict[str, str] = field(default_factory=dict)  # personal scope: app id -> installed version
    blocked: set[str] = field(default_factory=set)  # app ids an app permission policy blocks for this user
    teams_enabled: bool = True  # False: no Teams for this user, the teamwork endpoints answer 404
    installation_ids: dict[str, str] = field(default_factory=dict)
    refusal: Refusal | None = None


@dataclass
class Chat(Installable):
    id: str
    chat_type: str  # oneOnOne | group | meeting
    members: list[str]
    topic: str | None = None
    installed: dict[str, str] = field(default_factory=dict)
    blocked: set[str] = field(default_factory=set)
    installation_ids: dict[str, str] = field(default_factory=dict)
    refusal: Refusal | None = None


@dataclass
class Team(Installable):
    id: str
    display_name: str
    members: list[str]  # user ids, direct members
    description: str | None = None
    visibility: str = "private"
    installed: dict[str, str] = field(default_factory=dict)
    blocked: set[str] = field(default_factory=set)  # app ids the tenant admin blocks in this team
    archived: bool = False
    installation_ids: dict[str, str] = field(default_factory=dict)
    refusal: Refusal | None = None


class Tenant:
    def __init__(self, seed: int = 7) -> None:
        self.rand = random.Random(seed)  # noqa: S311 - a reproducible fake tenant, no secrets
        self.lock = threading.RLock()
        self.users: dict[str, User] = {}
        self.groups: dict[str, list[str]] = {}  # group id -> member ids (users or groups)
        self.chats: dict[str, Chat] = {}
        self.teams: dict[str, Team] = {}
        self.apps: dict[str, CatalogApp] = {}

    def __getstate__(self) -> dict:  # a copy for an emulator in another process: the lock stays here
        return {k: v for k, v in self.__dict__.items() if k != "lock"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.lock = threading.RLock()

    # ---- building ---------------------------------------------------------------------------------

    def _guid(self) -> str:
        return str(uuid.UUID(int=self.rand.getrandbits(128), version=4))

    def add_user(self, name: str | None = None, **kwargs) -> User:
        index = len(self.users) + 1
        user = User(self._guid(), name or f"User {index}", f"user{index}@contoso.example", **kwargs)
        self.users[user.id] = user
        return user

    def add_group(self, members: list[str]) -> str:
        group_id = self._guid()
        self.groups[group_id] = list(members)
        return group_id

    def add_app(
        self, name: str, versions=("1.0.0",), *, permissions=(), external_id: str | None = None, app_id: str | None = None
    ) -> CatalogApp:
        app = CatalogApp(app_id or self._guid(), external_id or self._guid(), name)
        for version in versions:
            app.definitions.append(Definition(app.id, version, permissions=list(permissions)))
        self.apps[app.id] = app
        return app

    def publish(
        self, app_id: str, version: str, *, permissions=None, requires_review: bool = False, listed_after: float = 0.0
    ) -> Definition:
        """A new version of an app; the catalog list shows it `listed_after` seconds from now (Graph's
        list "typically takes 24-48 hours" to reflect a publish under app-management policies)."""
        with self.lock:
            app = self.apps[app_id]
            current = app.newest_published()
            perms = list(permissions) if permissions is not None else list(current.permissions if current else [])
            definition = Definition(
                app_id, version, "submitted" if requires_review else "published", perms, time.time() + listed_after
            )
            app.definitions.append(definition)
            return definition

    def approve(self, app_id: str, version: str) -> None:
        with self.lock:
            for definition in self.apps[app_id].definitions:
                if definition.version == version and definition.state == "submitted":
                    definition.state = "published"

    def add_chat(
        self, chat_type: str, members: list[str], *, installed: dict[str, str] | None = None, chat_id: str | None = None
    ) -> Chat:
        if chat_id is None:
            if chat_type == "oneOnOne":
                chat_id = f"19:{members[0]}_{members[1]}@unq.gbl.spaces"
            elif chat_type == "meeting":
                chat_id = f"19:meeting_{b64(self._guid()).rstrip('=')}@thread.v2"
            else:
                chat_id = f"19:{self.rand.getrandbits(128):032x}@thread.v2"
        chat = Chat(chat_id, chat_type, list(members), installed=dict(installed or {}))
        self.chats[chat.id] = chat
        return chat

    def add_team(
        self,
        members: list[str],
        *,
        installed: dict[str, str] | None = None,
        archived: bool = False,
        name: str | None = None,
        description: str | None = None,
    ) -> Team:
        team = Team(
            self._guid(),
            name or f"Team {len(self.teams) + 1}",
            list(members),
            description=description,
            installed=dict(installed or {}),
            archived=archived,
        )
        self.teams[team.id] = team
        return team

    # ---- queries ----------------------------------------------------------------------------------

    def transitive_users(self, group_id: str) -> list[str]:
        seen: set[str] = set()
        result: list[str] = []
        stack = list(reversed(self.groups[group_id]))
        while stack:
            member = stack.pop()
            if member in seen:
                continue
            seen.add(member)
            if member in self.groups:
                stack.extend(reversed(self.groups[member]))
            elif member in self.users:
                result.append(member)
        return result

    def chats_of(self, user_id: str) -> list[Chat]:
        return [c for c in self.chats.values() if user_id in c.members]

    def joined_teams(self, user_id: str) -> list[Team]:
        return [t for t in self.teams.values() if user_id in t.members]

    def outdated_chats(self, app_id: str) -> list[Chat]:
        return self._outdated(list(self.chats.values()), app_id)

    def outdated_teams(self, app_id: str) -> list[Team]:
        return self._outdated(list(self.teams.values()), app_id)

    def outdated_users(self, app_id: str) -> list[User]:
        return self._outdated(list(self.users.values()), app_id)

    def _outdated(self, places: list, app_id: str) -> list:
        target = self.apps[app_id].newest_published()
        return [p for p in places if app_id in p.installed and is_newer(target.version, p.installed[app_id])]


DEPARTMENTS = ("Finance", "Sales", "Marketing", "Engineering", "HR", "Legal", "Support", "Operations", "Procurement", "IT")
FOCUS = ("", " EMEA", " Americas", " APAC", " Leadership", " Onboarding", " Projects", " Social")


def demo_tenant(
    *, users: int = 300, chats: int = 600, seed: int = 7, blocked: int = 5, teams: int = 40
) -> tuple[Tenant, CatalogApp]:
    """A realistic organisation: an org app installed in most chats, teams and users' personal scope
    at an old version, a newer version published, a few chats where a policy blocks the app, a team
    that blocks it, an archived team, two users whose policy blocks it and three users without Teams;
    and a group of pilots (one user in twelve) for a ring run."""
    tenant = Tenant(seed)
    rand = tenant.rand
    people = [tenant.add_user().id for _ in range(users)]
    app = tenant.add_app("Contoso Expenses", versions=("1.3.0", "1.4.0"))
    tenant.add_app("Contoso Helpdesk", versions=("2.0.0",))
    old_versions = ["1.2.0", "1.3.0", "1.3.0"]
    for _ in range(chats):
        kind = rand.choices(["oneOnOne", "group", "meeting"], weights=[3, 5, 2])[0]
        size = 2 if kind == "oneOnOne" else rand.randint(3, 8)
        members = rand.sample(people, size)
        chat = tenant.add_chat(kind, members)
        roll = rand.random()
        if roll < 0.80:
            chat.installed[app.id] = rand.choice(old_versions)
        elif roll < 0.88:
            chat.installed[app.id] = "1.4.0"
    candidates = [c for c in tenant.chats.values() if app.id in c.installed and c.installed[app.id] != "1.4.0"]
    for chat in rand.sample(candidates, min(blocked, len(candidates))):
        chat.blocked.add(app.id)
    # everything below draws from `rand` after the chats, so the chats are the same as without it
    _demo_personal(tenant, app.id, people, old_versions)
    with_teams = [u for u in people if tenant.users[u].teams_enabled]
    _demo_teams(tenant, app.id, with_teams, teams, old_versions)
    tenant.add_group(people[: max(1, users // 12)])  # the pilots: a group for a ring run
    return tenant, app


def _demo_personal(tenant: Tenant, app_id: str, people: list[str], old_versions: list[str]) -> None:
    rand = tenant.rand
    chats_per_user = {u: 0 for u in people}
    for chat in tenant.chats.values():
        for member in chat.members:
            chats_per_user[member] += 1
    # the people without a Teams licence are those who hardly chat
    for user_id in sorted(people, key=lambda u: chats_per_user[u])[: min(3, len(people))]:
        tenant.users[user_id].teams_enabled = False
    for user_id in people:
        user = tenant.users[user_id]
        roll = rand.random()
        if user.teams_enabled and roll < 0.75:
            user.installed[app_id] = rand.choice(old_versions)
        elif user.teams_enabled and roll < 0.85:
            user.installed[app_id] = "1.4.0"
    outdated = tenant.outdated_users(app_id)
    for user in rand.sample(outdated, min(2, len(outdated))):
        user.blocked.add(app_id)


def _demo_teams(tenant: Tenant, app_id: str, people: list[str], count: int, old_versions: list[str]) -> None:
    rand = tenant.rand
    names = [d + f for f in FOCUS for d in DEPARTMENTS]
    for index in range(count):
        name = names[index] if index < len(names) else f"{rand.choice(DEPARTMENTS)} Team {index + 1}"
        members = rand.sample(people, min(len(people), rand.randint(4, 40)))
        team = tenant.add_team(members, name=name, description=f"Everything {name.strip()} works on together.")
        roll = rand.random()
        if roll < 0.80:
            team.installed[app_id] = rand.choice(old_versions)
        elif roll < 0.90:
            team.installed[app_id] = "1.4.0"
    outdated = tenant.outdated_teams(app_id)
    picked = rand.sample(outdated, min(2, len(outdated)))
    if picked:
        picked[0].archived = True
    if len(picked) > 1:
        picked[1].blocked.add(app_id)
