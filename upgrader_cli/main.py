"""teams-upgrader: start a run and follow it, against a deployed Function App or the local stack.

  teams-upgrader publish --app-id GUID [--version 1.4.0] [--scope chat|team|personal ...]
                         [--chat ID ...] [--team ID ...] [--user ID ...] [--chats-file FILE] [--teams-file FILE]
                         [--users-file FILE] [--dry-run] [--watch]
  teams-upgrader status RUN_ID [--watch] [--json]

The app URL comes from --url or UPGRADER_URL (default http://127.0.0.1:7071); the function key from
--key or UPGRADER_FUNCTION_KEY. The key is sent in the x-functions-key header and never printed.
Exit codes: 0 the run completed and no chat failed; 1 the run failed or some chats failed;
2 a usage, connection or API error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import deque
from pathlib import Path
from urllib.parse import urlsplit

import requests

DEFAULT_URL = "http://127.0.0.1:7071"
OUTCOMES = ("upgraded", "wouldUpgrade", "alreadyCurrent", "notInstalled", "failed")
SCOPES = ("chat", "team", "personal")
ID_OPTIONS = {  # scope -> (API field, option, file option)
    "chat": ("chatIds", "chat", "chats_file"),
    "team": ("teamIds", "team", "teams_file"),
    "personal": ("userIds", "user", "users_file"),
}
ID_FIELDS = {"chat": "chatId", "team": "teamId", "personal": "userId"}


class CliError(Exception):
    """One line for the user; exit code 2."""


class Client:
    def __init__(self, url: str, key: str | None, *, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise CliError(f"--url must be an http(s) URL such as https://myapp.azurewebsites.net, got {url!r}")
        self.url = url.rstrip("/")
        self.session = requests.Session()
        if key:
            self.session.headers["x-functions-key"] = key
        self.timeout = timeout

    def _call(self, method: str, path: str, **kwargs) -> dict:
        target = f"{self.url}{path}"
        try:
            response = self.session.request(method, target, timeout=self.timeout, **kwargs)
        except requests.ConnectionError:
            raise CliError(f"cannot reach {self.url}: is the URL right and the app running?") from None
        except requests.Timeout:
            raise CliError(f"{self.url} did not answer within {self.timeout:.0f} s") from None
        if response.status_code in (401, 403):
            raise CliError(f"the function key was rejected ({response.status_code}): pass --key or set UPGRADER_FUNCTION_KEY")
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400:
            error = (body or {}).get("error") if isinstance(body, dict) else None
            if isinstance(error, dict):
                raise CliError(f"{error.get('code')}: {error.get('message')}")
            if response.status_code == 404:
                raise CliError(f"no upgrader API at {self.url} (404 for {path})")
            raise CliError(f"{method} {path} answered {response.status_code}")
        if not isinstance(body, dict):
            raise CliError(f"{method} {path} did not answer with JSON: is {self.url} the upgrader?")
        return body

    def publish(self, body: dict) -> dict:
        return self._call("POST", "/api/publish", json=body)

    def status(self, run_id: str) -> dict:
        return self._call("GET", f"/api/runs/{run_id}")


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


def _done(counts: dict) -> int:
    return sum(counts.get(k, 0) for k in OUTCOMES)


def _final(status: dict) -> bool:
    return status["state"] in ("completed", "failed") and status["counts"].get("pending", 0) == 0


class Progress:
    """A live line: bar, counts by outcome, rate and ETA (rate over the last 30 s)."""

    def __init__(self, stream, *, tty: bool) -> None:
        self.stream = stream
        self.tty = tty
        self.samples: deque[tuple[float, int]] = deque()
        self.last_line = ""
        self.last_print = 0.0

    def update(self, status: dict) -> None:
        counts = status["counts"]
        done, targets = _done(counts), counts.get("targets", 0)
        now = time.monotonic()
        self.samples.append((now, done))
        while len(self.samples) > 2 and now - self.samples[0][0] > 30:
            self.samples.popleft()
        (t0, d0), (t1, d1) = self.samples[0], self.samples[-1]
        rate = (d1 - d0) / (t1 - t0) if t1 > t0 else 0.0
        remaining = counts.get("pending", 0)
        eta = f"{remaining / rate:4.0f}s" if rate > 0 and remaining else "   -"
        width = 24
        filled = int(width * done / targets) if targets else 0
        bar = "#" * filled + "." * (width - filled)
        parts = " ".join(f"{k}={counts.get(k, 0)}" for k in OUTCOMES if counts.get(k, 0))
        line = f"{status['state']:<11} [{bar}] {done}/{targets} {parts} {rate:5.1f}/s eta {eta}"
        by_scope = status.get("countsByScope") or {}
        if len(by_scope) > 1:  # where each scope stands
            line += "  (" + ", ".join(f"{s} {_done(c)}/{c.get('targets', 0)}" for s, c in by_scope.items()) + ")"
        if self.tty:
            self.stream.write("\r" + line.ljust(len(self.last_line)))
            self.stream.flush()
        elif line != self.last_line and (now - self.last_print >= 5 or _final(status)):
            self.stream.write(line + "\n")
            self.last_print = now
        self.last_line = line

    def close(self) -> None:
        if self.tty and self.last_line:
            self.stream.write("\n")


COLUMN_NAMES = {"chat": "chats", "team": "teams", "personal": "users"}


def summary(status: dict) -> str:
    counts = status["counts"]
    by_scope = status.get("countsByScope") or {"chat": counts}
    columns = [(COLUMN_NAMES.get(s, s), c) for s, c in by_scope.items()]
    if len(columns) > 1:
        columns.append(("total", counts))
    lines = [
        f"Run {status['runId']}  app {status.get('teamsAppId')}  version {status.get('targetVersion')}"
        + ("  (dry run)" if status.get("dryRun") else ""),
        f"State: {status['state']}",
        "",
        f"  {'outcome':<16}" + "".join(f"{name:>10}" for name, _ in columns),
    ]
    for key in ("targets", *OUTCOMES, "pending"):
        lines.append(f"  {key:<16}" + "".join(f"{c.get(key, 0):>10}" for _, c in columns))
    discovery = status.get("discovery") or {}
    if discovery.get("usersFailed"):
        lines.append(f"\n  warning: the chats or teams of {discovery['usersFailed']} users could not be listed")
    if status.get("error"):
        lines.append(f"\nError: {status['error']['code']}: {status['error']['message']}")
    failures = status.get("failures") or []
    if failures:
        scopes = {f.get("scope", "chat") for f in failures}
        what = COLUMN_NAMES.get(s := scopes.pop(), s) + " " if len(scopes) == 1 else ""
        lines.append(f"\nFailed {what}({counts.get('failed', len(failures))}):")
        for failure in failures[:20]:
            scope = failure.get("scope", "chat")
            where = f"{scope:<8} {failure.get(ID_FIELDS.get(scope, 'chatId'))}"
            lines.append(f"  {where}  {failure.get('status') or '-'} {failure['code']}: {failure['message']}")
        if counts.get("failed", 0) > 20:
            lines.append(f"  ... and {counts['failed'] - 20} more (teams-upgrader status {status['runId']} --json)")
    return "\n".join(lines)


def exit_code(status: dict) -> int:
    return 0 if status["state"] == "completed" and status["counts"].get("failed", 0) == 0 and not status.get("error") else 1


def watch(client: Client, run_id: str, *, interval: float, stream, timeout: float | None = None) -> dict:
    progress = Progress(stream, tty=stream.isatty())
    deadline = time.monotonic() + timeout if timeout else None
    try:
        while True:
            status = client.status(run_id)
            progress.update(status)
            if _final(status):
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
    return body


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="teams-upgrader", description="Upgrade a Teams app in every chat, team and personal scope, and follow the run."
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=os.environ.get("UPGRADER_URL", DEFAULT_URL), help="Function App URL (UPGRADER_URL)")
    common.add_argument("--key", default=os.environ.get("UPGRADER_FUNCTION_KEY"), help="function key (UPGRADER_FUNCTION_KEY)")
    common.add_argument("--interval", type=float, default=1.0, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)

    publish = sub.add_parser("publish", parents=[common], help="start a run for a published app version")
    app = publish.add_mutually_exclusive_group(required=True)
    app.add_argument("--app-id", help="the app's id in the tenant app catalog (GUID)")
    app.add_argument("--external-id", help="the app's manifest id")
    publish.add_argument("--version", help="fail unless this is the newest published version")
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
    publish.add_argument("--watch", action="store_true", help="follow the run until it completes")

    status = sub.add_parser("status", parents=[common], help="show a run")
    status.add_argument("run_id")
    status.add_argument("--watch", action="store_true", help="follow the run until it completes")
    status.add_argument("--json", action="store_true", help="print the raw status JSON")
    return parser


def run(argv: list[str] | None = None, *, stdout=None, stderr=None) -> int:
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    args = build_parser().parse_args(argv)
    try:
        client = Client(args.url, args.key)
        if args.command == "publish":
            body = publish_body(args)
            if args.version:
                body["version"] = args.version
            if args.dry_run:
                body["dryRun"] = True
            started = client.publish(body)
            run_id = started["runId"]
            print(f"Run {run_id} started: {started['statusUrl']}", file=stdout)
            if not args.watch:
                return 0
        else:
            run_id = args.run_id
            if not args.watch:
                status = client.status(run_id)
                print(json.dumps(status, indent=2) if args.json else summary(status), file=stdout)
                return exit_code(status)
        status = watch(client, run_id, interval=args.interval, stream=stdout)
        print(json.dumps(status, indent=2) if getattr(args, "json", False) else "\n" + summary(status), file=stdout)
        return exit_code(status)
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
