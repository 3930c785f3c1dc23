"""teams-upgrader: start runs, follow them, and steer them, against a deployed Function App or the
local stack.

  teams-upgrader publish --app-id GUID [--version 1.4.0] [--scope chat|team|personal ...]
                         [--chat ID ...] [--team ID ...] [--user ID ...] [--chats-file FILE] [--teams-file FILE]
                         [--users-file FILE] [--dry-run] [--canary N [--max-failed-percent P] [--pause]]
                         [--rollout plan.json] [--group GUID] [--watch]
  teams-upgrader status RUN_ID [--watch] [--json]
  teams-upgrader runs [--app-id GUID] [--state STATE] [--top N] [--all] [--json]
  teams-upgrader cancel RUN_ID
  teams-upgrader resume RUN_ID [--watch]
  teams-upgrader retry RUN_ID [--watch]

The app URL comes from --url or UPGRADER_URL (default http://127.0.0.1:7071); the function key from
--key or UPGRADER_FUNCTION_KEY. The key is sent in the x-functions-key header and never printed.
Exit codes: 0 the run completed and no target failed; 1 the run failed or some targets failed;
2 a usage, connection or API error; 3 the run is paused (a canary or a rollout step waits for an
operator); 4 the run was cancelled; 5 the run waits (a bake, its maintenance window, the app
catalog: it goes on by itself; --watch follows waits under a minute); 6 the run is still going
(status without --watch); 130 interrupted (the run goes on).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from shared import __version__
from upgrader_cli.client import Client, CliError, EntraTokens
from upgrader_cli.render import Progress, exit_code, history_table, settled, summary

DEFAULT_URL = "http://127.0.0.1:7071"
SCOPES = ("chat", "team", "personal")
STATES = ("queued", "waiting", "discovering", "upgrading", "paused", "cancelling", "failing", "cancelled", "completed", "failed")
ID_OPTIONS = {  # scope -> (API field, option, file option)
    "chat": ("chatIds", "chat", "chats_file"),
    "team": ("teamIds", "team", "teams_file"),
    "personal": ("userIds", "user", "users_file"),
}


def read_ids_file(path: str) -> list[str]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    if text.lstrip().startswith("["):
        try:
            chats = json.loads(text)
        except ValueError:
            raise CliError(f"{path} looks like JSON but does not parse") from None
        if not isinstance(chats, list):
            raise CliError(f"{path} must hold a JSON array of ids")
        return [str(c) for c in chats]
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def watch(client: Client, run_id: str, *, interval: float, stream, timeout: float | None = None) -> dict:
    progress = Progress(stream, tty=stream.isatty())
    deadline = time.monotonic() + timeout if timeout else None
    try:
        while True:
            status = client.status(run_id)
            progress.update(status)
            if settled(status):
                return status
            if deadline and time.monotonic() > deadline:
                raise CliError(f"run {run_id} still {status['state']} after {timeout:.0f} s")
            time.sleep(interval)
    finally:
        progress.close()


def publish_body(args: argparse.Namespace) -> dict:
    """The POST /api/publish body. Given ids make the run target exactly them; --scope then only
    has to agree with them (the API takes no scopes with ids)."""
    body: dict = {"teamsAppId": args.app_id} if args.app_id else {"externalId": args.external_id}
    given = {}
    for scope, (field, option, file_option) in ID_OPTIONS.items():
        ids = list(getattr(args, option)) + (read_ids_file(getattr(args, file_option)) if getattr(args, file_option) else [])
        if ids:
            given[scope] = ids
            body[field] = ids
    scopes = list(dict.fromkeys(args.scope))
    if given and scopes:
        extra = [s for s in given if s not in scopes]
        if extra:
            raise CliError(f"ids are given for the {', '.join(extra)} scope but --scope does not name it")
    elif scopes:
        body["scopes"] = scopes
    if args.version:
        body["version"] = args.version
    if args.dry_run:
        body["dryRun"] = True
    if args.canary is not None:
        body["canary"] = {"targets": args.canary, "maxFailedPercent": args.max_failed_percent, "pause": args.pause}
    elif args.max_failed_percent or args.pause:
        raise CliError("--max-failed-percent and --pause go with --canary N")
    if args.rollout:
        body["rollout"] = read_rollout(args.rollout)
    if args.group:
        body["groupId"] = args.group
    return body


def read_rollout(path: str) -> dict:
    """A rollout plan file: the rollout object, or a body holding it under "rollout"."""
    try:
        plan = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise CliError(f"{path} is not JSON: {exc}") from None
    if isinstance(plan, dict) and isinstance(plan.get("rollout"), dict):
        plan = plan["rollout"]
    if not isinstance(plan, dict):
        raise CliError(f'{path} must hold a rollout object: {{"steps": [...], ...}}')
    return plan


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="teams-upgrader", description="Upgrade a Teams app in every chat, team and personal scope, and steer the run."
    )
    parser.add_argument("--version", action="version", version=f"teams-upgrader {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=os.environ.get("UPGRADER_URL", DEFAULT_URL), help="Function App URL (UPGRADER_URL)")
    common.add_argument("--key", default=os.environ.get("UPGRADER_FUNCTION_KEY"), help="function key (UPGRADER_FUNCTION_KEY)")
    common.add_argument(
        "--auth",
        choices=("key", "entra"),
        default=os.environ.get("UPGRADER_AUTH", "key"),
        help="key: a function key; entra: an Entra ID token of your az login or identity (UPGRADER_AUTH)",
    )
    common.add_argument(
        "--api-client-id",
        default=os.environ.get("UPGRADER_API_CLIENT_ID"),
        help="with --auth entra: the API's app registration (UPGRADER_API_CLIENT_ID, the app's API_AUTH_CLIENT_ID)",
    )
    common.add_argument("--interval", type=float, default=1.0, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)

    publish = sub.add_parser("publish", parents=[common], help="start a run for a published app version")
    app = publish.add_mutually_exclusive_group(required=True)
    app.add_argument("--app-id", help="the app's id in the tenant app catalog (GUID)")
    app.add_argument("--external-id", help="the app's manifest id")
    publish.add_argument("--version", help="this version: waits until the catalog lists it (CATALOG_WAIT), fails if older")
    publish.add_argument(
        "--scope", action="append", choices=SCOPES, default=[], help="upgrade in this scope (repeatable; default: UPGRADE_SCOPES)"
    )
    publish.add_argument("--chat", action="append", default=[], help="only this chat (repeatable)")
    publish.add_argument("--team", action="append", default=[], help="only this team (repeatable)")
    publish.add_argument("--user", action="append", default=[], help="only this user's personal scope (repeatable)")
    publish.add_argument("--chats-file", help="only the chats in this file (one id per line, or a JSON array)")
    publish.add_argument("--teams-file", help="only the teams in this file")
    publish.add_argument("--users-file", help="only the users in this file")
    publish.add_argument("--dry-run", action="store_true", help="count what would be upgraded, change nothing")
    publish.add_argument("--canary", type=int, metavar="N", help="decide N targets first; the rest only if few failed")
    publish.add_argument(
        "--max-failed-percent",
        type=float,
        default=0.0,
        metavar="P",
        help="pause if more than P%% of the canary failed (default 0)",
    )
    publish.add_argument("--pause", action="store_true", help="pause after a canary that passed, until resumed")
    publish.add_argument("--rollout", metavar="FILE", help="roll out in steps: a JSON plan (steps, maxFailedPercent, window)")
    publish.add_argument("--group", metavar="GUID", help="only the installations of this group's members (a pilot ring)")
    publish.add_argument("--watch", action="store_true", help="follow the run until it completes, pauses or waits a while")

    status = sub.add_parser("status", parents=[common], help="show a run")
    status.add_argument("run_id")
    status.add_argument("--watch", action="store_true", help="follow the run until it ends, pauses or waits a while")
    status.add_argument("--json", action="store_true", help="print the raw status JSON")

    runs = sub.add_parser("runs", parents=[common], help="list runs, newest first")
    runs.add_argument("--app-id", help="only this app's runs")
    runs.add_argument("--state", choices=STATES, help="only runs in this state")
    runs.add_argument("--top", type=int, default=20, help="runs per page (1-100, default 20)")
    runs.add_argument("--all", action="store_true", help="every page, not just the first")
    runs.add_argument("--json", action="store_true", help="print the raw JSON")

    for name, text in (
        ("cancel", "cancel a run"),
        ("resume", "resume a paused run, or end a bake now (promote)"),
        ("retry", "retry what failed or was cancelled"),
    ):
        action = sub.add_parser(name, parents=[common], help=text)
        action.add_argument("run_id")
        if name != "cancel":
            action.add_argument("--watch", action="store_true", help="follow the run until it ends, pauses or waits a while")
    return parser


def _history(client: Client, args: argparse.Namespace, stdout) -> int:
    page = client.runs({"appId": args.app_id, "state": args.state, "top": args.top})
    found = list(page["value"])
    while args.all and page.get("nextLink"):
        page = client.page(page["nextLink"])
        found += page["value"]
    if args.json:
        print(json.dumps({"value": found, "nextLink": page.get("nextLink")}, indent=2), file=stdout)
    else:
        print(history_table(found), file=stdout)
        if page.get("nextLink"):
            print("(more: --all)", file=stdout)
    return 0


def _command(client: Client, args: argparse.Namespace, stdout) -> int:
    """Runs one command; returns the exit code (or None to watch `args.run_id`)."""
    if args.command == "runs":
        return _history(client, args, stdout)
    if args.command == "publish":
        started = client.publish(publish_body(args))
        args.run_id = started["runId"]
        print(f"Run {args.run_id} started: {started['statusUrl']}", file=stdout)
    elif args.command == "retry":
        started = client.act(args.run_id, "retry")
        print(f"Run {started['runId']} retries run {args.run_id}: {started['statusUrl']}", file=stdout)
        args.run_id = started["runId"]
    elif args.command in ("cancel", "resume"):
        status = client.act(args.run_id, args.command)
        print(f"Run {args.run_id} is {status['state']}.", file=stdout)
        if args.command == "cancel":
            return 0
    if not getattr(args, "watch", False):
        if args.command != "status":
            return 0
        status = client.status(args.run_id)
        print(json.dumps(status, indent=2) if args.json else summary(status), file=stdout)
        return exit_code(status)
    status = watch(client, args.run_id, interval=args.interval, stream=stdout)
    print(json.dumps(status, indent=2) if getattr(args, "json", False) else "\n" + summary(status), file=stdout)
    return exit_code(status)


def _client(args) -> Client:
    if args.auth == "key":
        return Client(args.url, args.key)
    if not args.api_client_id:
        raise CliError("--auth entra needs --api-client-id (or UPGRADER_API_CLIENT_ID): the API's app registration")
    return Client(args.url, None, tokens=EntraTokens(args.api_client_id))


def run(argv: list[str] | None = None, *, stdout=None, stderr=None) -> int:
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    args = build_parser().parse_args(argv)
    try:
        return _command(_client(args), args, stdout)
    except CliError as exc:
        print(f"teams-upgrader: error: {exc}", file=stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; the run goes on (teams-upgrader status RUN_ID --watch)", file=stderr)
        return 130


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
