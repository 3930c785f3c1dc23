"""The whole thing on one machine: Azurite, the loopback managed-identity endpoint, the Graph
emulator seeded with a demo tenant, and the local Functions host.

  python -m devtools.stack run    # leave it up for curl / teams-upgrader; Ctrl-C stops everything
  python -m devtools.stack demo   # publish the new version, watch the run, print the summary, stop

Options: --users, --chats, --teams, --latency (seconds per Graph request), --rps (GRAPH_MAX_RPS and the
emulator's limit is Graph's 30), --workers (queue worker processes), --port, --seed.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from devtools.azurite import Azurite
from devtools.funchost import LocalHost
from devtools.graph_emulator import GraphEmulator
from devtools.graph_limits import Limits
from devtools.identity import IdentityEndpoint
from devtools.tenant import demo_tenant

ROOT = Path(__file__).resolve().parent.parent


class Stack:
    def __init__(
        self,
        *,
        users: int = 300,
        chats: int = 600,
        teams: int = 40,
        latency: float = 0.05,
        rps: float = 25,
        workers: int = 2,
        port: int = 7071,
        seed: int = 7,
        graph_limit: int = 30,
        function_key: str | None = None,
        worker_log: str | None = None,
    ) -> None:
        self.tenant, self.app = demo_tenant(users=users, chats=chats, teams=teams, seed=seed)
        self.options = {"latency": latency, "rps": rps, "workers": workers, "port": port, "graph_limit": graph_limit}
        self.function_key = function_key
        self.worker_log = worker_log
        self.azurite: Azurite | None = None
        self.identity: IdentityEndpoint | None = None
        self.graph: GraphEmulator | None = None
        self.host: LocalHost | None = None

    def start(self) -> Stack:
        o = self.options
        self.azurite = Azurite().start()
        self.identity = IdentityEndpoint().start()
        limits = Limits(bucket_rps=o["graph_limit"], retry_after=10)
        self.graph = GraphEmulator(self.tenant, authority=self.identity.authority, limits=limits, latency=o["latency"]).start()
        os.environ.update(self.identity.env())
        os.environ.update(
            {
                "AzureWebJobsStorage": self.azurite.connection_string,
                "GRAPH_BASE_URL": self.graph.base_url,
                "GRAPH_MAX_RPS": str(o["rps"]),
                "UPGRADE_SCOPES": "chat,team,personal",
            }
        )
        os.environ.setdefault("CATALOG_WATCH_SCHEDULE", "0 */5 * * * *")
        os.environ.setdefault("SUBSCRIPTION_SCHEDULE", "0 0 * * * *")
        os.environ.setdefault("QUEUE_MONITOR_SCHEDULE", "0 * * * * *")
        os.environ.setdefault("RUN_KEEPER_SCHEDULE", "0 */5 * * * *")
        os.environ.setdefault("RETENTION_SCHEDULE", "0 30 2 * * *")
        for name in ("MSI_ENDPOINT", "IMDS_ENDPOINT", "IDENTITY_SERVER_THUMBPRINT", "AZURE_CLIENT_ID"):
            os.environ.pop(name, None)
        self.host = LocalHost(
            ROOT / "function_app.py",
            http_port=o["port"],
            queue_workers=o["workers"],
            function_key=self.function_key,
            worker_log=self.worker_log,
            queue_overrides={"max_polling_interval": 1.0},
        )
        self.host.start()
        return self

    def stop(self) -> None:
        for part in (self.host, self.graph, self.identity, self.azurite):
            if part is not None:
                part.stop()

    def describe(self) -> str:
        tenant, app_id = self.tenant, self.app.id
        kinds = Counter(c.chat_type for c in tenant.chats.values())
        newest = self.app.newest_published().version
        lines = [
            f"Emulated tenant: {len(tenant.users)} users, {len(tenant.chats)} chats "
            f"({kinds['oneOnOne']} one-on-one, {kinds['group']} group, {kinds['meeting']} meeting), {len(tenant.teams)} teams",
            f"App '{self.app.display_name}' (teamsAppId {app_id}), newest version {newest}:",
        ]
        for noun, places, outdated in (
            ("chats", tenant.chats.values(), tenant.outdated_chats(app_id)),
            ("teams", tenant.teams.values(), tenant.outdated_teams(app_id)),
            ("users (personal scope)", tenant.users.values(), tenant.outdated_users(app_id)),
        ):
            installed = sum(1 for p in places if app_id in p.installed)
            blocked = sum(1 for p in outdated if app_id in p.blocked or getattr(p, "archived", False))
            lines.append(f"  installed in {installed} {noun}; {len(outdated)} outdated, {blocked} of them blocked or archived")
        for group_id, members in tenant.groups.items():
            lines.append(f"Pilot group {group_id}: {len(members)} users (a ring: publish --group {group_id})")
        return "\n".join(lines)

    def left_behind(self) -> tuple[list, list]:
        """Outdated installations after a run: those Graph refuses (blocked, archived), and the rest."""
        app_id = self.app.id
        places = [*self.tenant.outdated_chats(app_id), *self.tenant.outdated_teams(app_id), *self.tenant.outdated_users(app_id)]
        refused = [p for p in places if app_id in p.blocked or getattr(p, "archived", False)]
        return refused, [p for p in places if p not in refused]


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devtools.stack", description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["run", "demo"])
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--chats", type=int, default=600)
    parser.add_argument("--teams", type=int, default=40)
    parser.add_argument("--latency", type=float, default=0.05, help="emulated Graph latency per request, seconds")
    parser.add_argument("--rps", type=float, default=25, help="GRAPH_MAX_RPS")
    parser.add_argument("--workers", type=int, default=2, help="queue worker processes")
    parser.add_argument("--port", type=int, default=7071)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--function-key", default=os.environ.get("UPGRADER_FUNCTION_KEY"), help="require this key on HTTP routes")
    return parser.parse_args(argv)


def demo(stack: Stack) -> int:
    from upgrader_cli.main import run as cli

    print(stack.describe(), flush=True)
    print(f"\n$ teams-upgrader publish --app-id {stack.app.id} --watch --url {stack.host.base_url}\n", flush=True)
    code = cli(["publish", "--app-id", stack.app.id, "--watch", "--url", stack.host.base_url, "--interval", "0.5"])
    refused, unexpected = stack.left_behind()
    if unexpected or code == 2:
        print(f"\nDemo FAILED: {len(unexpected)} outdated installations were not upgraded.", flush=True)
        return 1
    print(
        f"\nDemo OK: every outdated chat, team and user is on {stack.app.newest_published().version} except the "
        f"{len(refused)} where a policy blocks the app or the team is archived, reported above with Graph's reason.",
        flush=True,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    started = time.monotonic()
    quiet = args.mode == "demo"
    log_file = None
    if quiet:
        log_file = os.path.join(tempfile.gettempdir(), "teams-upgrader-demo.log")
        logging.basicConfig(filename=log_file, filemode="w", level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    else:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("azure").setLevel(logging.WARNING)
    stack = Stack(
        users=args.users,
        chats=args.chats,
        teams=args.teams,
        latency=args.latency,
        rps=args.rps,
        workers=args.workers,
        port=args.port,
        seed=args.seed,
        function_key=args.function_key,
        worker_log=log_file,
    )
    print("Starting Azurite, the managed-identity endpoint, the Graph emulator and the local host...", flush=True)
    stack.start()
    try:
        if args.mode == "demo":
            code = demo(stack)
            print(f"Took {time.monotonic() - started:.0f} s; host log: {log_file}", flush=True)
            return code
        print(stack.describe())
        print(f"\nFunction app: {stack.host.base_url}/api   Graph emulator: {stack.graph.base_url}")
        print(f"Try:  teams-upgrader publish --app-id {stack.app.id} --watch")
        print(f'  or: curl -s -X POST {stack.host.base_url}/api/publish -d \'{{"teamsAppId": "{stack.app.id}"}}\'')
        print("Ctrl-C stops everything.", flush=True)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
        return 0
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
