"""What tests share: a client of the running API, starting the local host, waiting for a condition,
tight Graph limits, small tenants, the final-status check, Graph refusing a missing role, and the
infrastructure files and the permission table read as data."""

from __future__ import annotations

import re
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests
import tree_sitter_bicep
from azure.storage.queue import QueueServiceClient
from tree_sitter import Language, Node, Parser

from devtools.azurite import ACCOUNT_KEY
from devtools.funchost import LocalHost
from devtools.graph_emulator import GraphEmulator
from devtools.graph_limits import Limits
from devtools.tenant import CatalogApp, Chat, Team, Tenant, User
from shared.foundation.settings import StorageSettings
from shared.foundation.storage import CONTROL_QUEUE, POISON_SUFFIX, RUNS_TABLE, TARGETS_QUEUE, Storage
from shared.stores.counters import Counters
from shared.stores.runs import RunStore
from shared.stores.targets import TargetStore

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
PARSER = Parser(Language(tree_sitter_bicep.language()))
FINAL = ("completed", "failed", "cancelled")
NEVER = "0 0 0 1 1 *"  # NCRONTAB: once a year (tests fire the timers themselves)

# ---- the running app ------------------------------------------------------------------------------


class Api:
    """The HTTP API of a running host, as a client sees it."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()

    def publish(self, body=None, *, data: bytes | None = None, headers: dict | None = None) -> requests.Response:
        if data is not None:
            return self.session.post(f"{self.base_url}/api/publish", data=data, headers=headers or {})
        return self.session.post(f"{self.base_url}/api/publish", json=body)

    def start(self, **body) -> str:
        response = self.publish(body)
        assert response.status_code == 202, response.text
        return response.json()["runId"]

    def status(self, run_id: str) -> dict:
        response = self.session.get(f"{self.base_url}/api/runs/{run_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def act(self, run_id: str, action: str) -> requests.Response:
        """POST /api/runs/{runId}/cancel, /resume or /retry."""
        return self.session.post(f"{self.base_url}/api/runs/{run_id}/{action}")

    def runs(self, **params) -> requests.Response:
        return self.session.get(f"{self.base_url}/api/runs", params=params)

    def wait(self, run_id: str, timeout: float = 60.0, until: Callable[[dict], bool] | None = None) -> dict:
        """Polls the run status until it is final (or `until` holds)."""
        until = until or (lambda s: s["state"] in ("completed", "failed", "cancelled") and s["counts"]["pending"] == 0)
        deadline = time.monotonic() + timeout
        while True:
            status = self.status(run_id)
            if until(status):
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"run {run_id} not done after {timeout} s: {status}")
            time.sleep(0.1)


def unreachable_storage() -> str:
    """A connection string whose endpoints refuse connections: storage that is down."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    endpoint = f"http://127.0.0.1:{port}/devstoreaccount1"
    return (
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={ACCOUNT_KEY};"
        f"QueueEndpoint={endpoint};TableEndpoint={endpoint};"
    )


def wait_for(condition: Callable[[], object], timeout: float = 30.0):
    """Polls `condition` until it returns something truthy, and returns that."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)
    return result


def tight_limits(emulator: GraphEmulator, env, limit: int) -> None:
    """Graph's limits, and GRAPH_MAX_RPS, at `limit` requests per second per bucket."""
    emulator.limits = Limits(bucket_rps=limit, directory_rps=limit, retry_after=1)
    emulator.throttle.limits = emulator.limits
    env.setenv("GRAPH_MAX_RPS", str(limit))


def run_killing_a_worker(emulator: GraphEmulator, start: Callable[[Api], str], dies_on: Callable[[str], bool]) -> dict:
    """Runs on one worker process, which is killed (SIGKILL) while Graph holds the response to the
    first upgrade of a resource `dies_on` accepts, after the upgrade was applied; another worker
    takes over. Returns the final status."""
    applied, release = threading.Event(), threading.Event()

    def hold(resource_id: str) -> None:
        if dies_on(resource_id) and not applied.is_set():
            applied.set()
            release.wait(30)  # the worker dies while waiting for this response

    emulator.on_upgrade = hold
    host = start_host(queue_workers=1, lease=2.0)
    try:
        api = Api(host.base_url)
        run_id = start(api)
        assert applied.wait(30), "no upgrade reached Graph"
        victim = host.workers[0]
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        host.workers.append(host.spawn_worker())
        release.set()
        return api.wait(run_id, timeout=60)
    finally:
        release.set()
        host.stop()


def start_host(**options) -> LocalHost:
    options.setdefault("http_port", 0)
    options.setdefault("queue_overrides", {"max_polling_interval": 0.2})
    return LocalHost(**options).start()


def final_for_good(api: Api, azurite, run_id: str) -> dict:
    """The first status read that says final, once it is checked to be the last word: nothing
    pending in it, and the same at every read until every queued message is done, and after."""
    first = api.wait(run_id, until=lambda s: s["state"] in FINAL)
    assert first["counts"]["pending"] == 0, first
    service = QueueServiceClient.from_connection_string(azurite.connection_string)
    reads = 0

    def drained() -> bool:
        nonlocal reads
        assert api.status(run_id) == first
        reads += 1
        queues = (service.get_queue_client(q) for q in (CONTROL_QUEUE, TARGETS_QUEUE, TARGETS_QUEUE + POISON_SUFFIX))
        return all(q.get_queue_properties().approximate_message_count == 0 for q in queues)

    wait_for(drained, timeout=60)
    for _ in range(3):
        assert api.status(run_id) == first
    return first


def stores(azurite) -> tuple[RunStore, TargetStore]:
    """The run and target stores of the emulated account, as the app builds them."""
    table = Storage(StorageSettings(connection_string=azurite.connection_string)).table(RUNS_TABLE)
    counters = Counters(table)
    return RunStore(table, counters), TargetStore(table, counters)


def graph_says_a_role_is_missing(emulator: GraphEmulator) -> None:
    """Graph refuses every chat's installedApps although the token holds a role the pre-check
    accepts: only Graph's 403 tells (its answer is what counts, whatever the token says)."""
    needed = "TeamsAppInstallation.ReadForChat.All, TeamsAppInstallation.ReadWriteForChat.All"
    message = f"Missing role permissions on the request. API requires one of '{needed}'."
    emulator.inject(403, 100_000, kind="getInstalledApps", code="Forbidden", message=message)


ALL_SCOPES = "chat,team,personal"
ZERO = {"upgraded": 0, "wouldUpgrade": 0, "alreadyCurrent": 0, "notInstalled": 0, "failed": 0, "cancelled": 0, "pending": 0}


def counts(**given: int) -> dict:
    """A run's counts: these outcomes, every other one 0, and their sum as targets."""
    return {"targets": sum(given.values()), **ZERO, **given}


# ---- small tenants ----------------------------------------------------------------------------------


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


# ---- the infrastructure files, read as data (Bicep cannot be compiled here) ---------------------------


def parse(path: Path) -> Node:
    return PARSER.parse(path.read_bytes()).root_node


def text(node: Node) -> str:
    return node.text.decode()


def resources(node: Node) -> list[tuple[str, str, Node]]:
    """(symbol, 'Type@api', body object) of every resource declaration, nested ones included."""
    found = []
    for child in node.children:
        if child.type == "resource_declaration":
            symbol = next(c for c in child.children if c.type == "identifier")
            type_ = next(c for c in child.children if c.type == "string")
            body = next((c for c in child.children if c.type in ("object", "for_statement", "if_statement")), None)
            if body is not None and body.type != "object":
                body = next((c for c in body.children if c.type == "object"), body)
            found.append((text(symbol), text(type_).strip("'"), body))
        found.extend(resources(child))
    return found


def properties(obj: Node) -> dict[str, Node]:
    props = {}
    for child in obj.children:
        if child.type == "object_property":
            key = child.children[0]
            props[text(key).strip("'")] = child.children[-1]
    return props


def resource(tree: Node, type_prefix: str) -> list[tuple[str, Node]]:
    return [(symbol, body) for symbol, type_, body in resources(tree) if type_.lower().startswith(type_prefix.lower())]


def modules(tree: Node) -> list[tuple[str, Node]]:
    """(symbol, body) of every module declaration."""
    found = []
    for child in tree.children:
        if child.type == "module_declaration":
            symbol = next(c for c in child.children if c.type == "identifier")
            body = next((c for c in child.children if c.type in ("object", "if_statement")), None)
            if body is not None and body.type != "object":
                body = next((c for c in body.children if c.type == "object"), body)
            found.append((text(symbol), body))
        found.extend(modules(child))
    return found


def app_settings() -> dict[str, Node]:
    tree = parse(INFRA / "app.bicep")
    [body] = [b for s, t, b in resources(tree) if t == "config" and s == "appSettings"]
    union = properties(body)["properties"]  # union({...}, notificationSettings)
    first = next(n for n in union.children if n.type == "arguments")
    settings = properties(next(n for n in first.children if n.type == "object"))
    variable = re.search(r"var notificationSettings = (.*?)\} : \{\}", (INFRA / "app.bicep").read_text(), re.S).group(1)
    for key in re.findall(r"^\s*(\w+):", variable, re.M):
        settings[key] = None
    return settings


def text_of(node: Node | None) -> str:
    return text(node) if node is not None else ""


# ---- the Graph permission table, read as data: one row per Graph call the app makes ----------------

README = ROOT / "docs" / "operations.md"
PERMISSION = re.compile(r"`([A-Za-z][A-Za-z-]*(?:\.[A-Za-z-]+)+)`")  # `User.Read.All`, not `--rsc` or `/users`
TABLE_SCOPES = {"every deployment": "every", "`chat`": "chat", "`team`": "team", "`personal`": "personal"}


@dataclass(frozen=True)
class PermissionRow:
    scope: str  # chat | team | personal | every | group (with DISCOVERY_GROUP_ID)
    call: str
    least: tuple[str, ...]  # Graph's least privileged, as the reference page names it
    grant: tuple[str, ...]  # what the scripts grant for the call (none: another row's grant covers it)
    grant_rsc: tuple[str, ...]  # what they grant instead with --rsc (none: the same)
    also: tuple[str, ...]  # other permissions the reference lists that work as well
    also_upgrade_row: bool  # "every permission of the upgrade row" works as well
    not_with_group: bool = False  # the scripts grant it only without --group-discovery (no scan of every user then)

    @property
    def is_upgrade(self) -> bool:
        return self.call.startswith("`POST ") and "/upgrade`" in self.call

    @property
    def accepted(self) -> set[str]:
        return {*self.grant, *self.grant_rsc, *self.also}


def names(cell: str) -> tuple[str, ...]:
    return tuple(PERMISSION.findall(cell))


def permission_rows(text: str | None = None) -> list[PermissionRow]:
    text = README.read_text() if text is None else text
    section = text.split("\n## Graph permissions\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("| ")]
    header, rows = lines[0], lines[1:]
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "scope",
        "Graph call",
        "least privileged (Graph's reference)",
        "the scripts grant",
        "also accepted",
    ], header
    result = []
    for line in rows:
        scope, call, least, grant, also = (c.strip() for c in line.strip().strip("|").split("|"))
        plain, _, rsc = grant.partition("`--rsc`:")
        result.append(
            PermissionRow(
                scope=TABLE_SCOPES.get(scope, "group" if "DISCOVERY_GROUP_ID" in scope else scope),
                call=call,
                least=names(least),
                grant=names(plain),
                grant_rsc=names(rsc),
                also=names(also),
                also_upgrade_row="every permission of the upgrade row" in also,
                not_with_group="not with `--group-discovery`" in grant,
            )
        )
    return result
