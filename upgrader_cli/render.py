"""What the CLI prints: the live progress line, a run's summary, the run history."""

from __future__ import annotations

import time
from collections import deque
from datetime import UTC, datetime

OUTCOMES = ("upgraded", "wouldUpgrade", "alreadyCurrent", "notInstalled", "failed", "cancelled")
FINAL_STATES = ("completed", "failed", "cancelled")
ID_FIELDS = {"chat": "chatId", "team": "teamId", "personal": "userId"}
PAUSED, CANCELLED, WAITING, GOING = 3, 4, 5, 6  # exit codes
LONG_WAIT = 60  # seconds: --watch follows a run through shorter waits, and stops at longer ones


def _done(counts: dict) -> int:
    return sum(counts.get(k, 0) for k in OUTCOMES)


def waits_long(status: dict, now: datetime | None = None) -> bool:
    """Waiting for longer than a minute (a bake, a window, the catalog), or until an operator acts."""
    if status["state"] != "waiting":
        return False
    resumes = (status.get("waiting") or {}).get("resumesAt")
    if not resumes:
        return True
    now = now or datetime.now(UTC)
    return (datetime.fromisoformat(resumes.replace("Z", "+00:00")) - now).total_seconds() > LONG_WAIT


def settled(status: dict) -> bool:
    """Nothing more will happen soon by itself: over (nothing pending), paused for an operator, or
    waiting longer than a minute."""
    over = status["state"] in FINAL_STATES and status["counts"].get("pending", 0) == 0
    return over or status["state"] == "paused" or waits_long(status)


def plan_line(status: dict) -> str | None:
    """Where the run stands in its rollout: "step 3 of 6 (pause PT24H): waiting (bake) until ..."."""
    rollout = status.get("rollout")
    if not rollout:
        return None
    steps = rollout["steps"]
    hold = status.get("pause") or {}
    index = hold.get("step", rollout["step"])
    if index >= len(steps):
        return f"rollout: through all {len(steps)} steps"
    step = steps[index]
    kind, body = next(iter(step.items()))
    what = (
        (f"upgrade {body['targets']} targets" if "targets" in body else f"upgrade {body['percent']:g}%")
        if kind == "upgrade"
        else (f"bake {body['duration']}" if body.get("duration") else "pause for an operator")
    )
    line = f"rollout: step {index + 1} of {len(steps)} ({what}): {status['state']}"
    waiting = status.get("waiting") or {}
    if status["state"] == "waiting":
        line += f" ({waiting.get('reason')})" + (f" until {waiting['resumesAt']}" if waiting.get("resumesAt") else "")
    return line


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
        plan = plan_line(status)
        if plan:
            line += f"  [{plan}]"
        by_scope = status.get("countsByScope") or {}
        if len(by_scope) > 1:  # where each scope stands
            line += "  (" + ", ".join(f"{s} {_done(c)}/{c.get('targets', 0)}" for s, c in by_scope.items()) + ")"
        if self.tty:
            self.stream.write("\r" + line.ljust(len(self.last_line)))
            self.stream.flush()
        elif line != self.last_line and (now - self.last_print >= 5 or settled(status)):
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
    lines += _steering(status)
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


def _steering(status: dict) -> list[str]:
    """What operators and the canary did to the run, and what to do next."""
    lines = []
    run_id = status["runId"]
    started = status.get("startedBy") or {}
    origin = f"Started by {started.get('name', '?')} ({status.get('trigger', 'api')})"
    if status.get("retryOf"):
        origin += f", retrying run {status['retryOf']}"
    lines.append(origin)
    canary = status.get("canary")
    if canary:
        lines.append(
            f"Canary: {canary['decided']} of {canary['selected']} decided ({canary['targets']} asked), "
            f"{canary['failed']} failed (at most {canary['maxFailedPercent']:g}% allowed)"
        )
    plan = plan_line(status)
    if plan:
        rollout = status["rollout"]
        window = rollout.get("window")
        budget = f"at most {rollout['maxFailedPercent']:g}% of a step may fail"
        lines.append(plan[0].upper() + plan[1:] + f"; {budget}" + (f"; window {_window(window)}" if window else ""))
    if status.get("groupId"):
        lines.append(f"Pilot ring: the members of group {status['groupId']}")
    pause = status.get("pause")
    if status["state"] == "paused" and pause:
        why = {
            "canaryFailed": "the canary failed",
            "canaryPassed": "the canary passed and the run was asked to pause",
            "stepFailed": f"too many targets of step {pause.get('step', 0) + 1} failed",
            "step": f"step {pause.get('step', 0) + 1} of the rollout waits for an operator",
        }
        reason = why.get(pause.get("reason"), pause.get("reason"))
        lines.append(f"\nPaused: {reason} ({pause['failed']} of {pause['decided']} failed).")
        lines.append(f"  Look at the failures, then: teams-upgrader resume {run_id}  (or: teams-upgrader cancel {run_id})")
    waiting = status.get("waiting")
    if status["state"] == "waiting" and waiting:
        until = f" until {waiting['resumesAt']}" if waiting.get("resumesAt") else ""
        why = {"bake": "a bake", "window": "the maintenance window", "catalog": "the version to show in the app catalog"}
        lines.append(f"\nWaiting for {why.get(waiting['reason'], waiting['reason'])}{until}; it goes on by itself.")
        if waiting["reason"] == "bake":
            lines.append(f"  To go on now: teams-upgrader resume {run_id}  (or: teams-upgrader cancel {run_id})")
    cancelled = status.get("cancelled")
    if cancelled:
        by = (cancelled.get("by") or {}).get("name", "?")
        lines.append(f"\nCancelled by {by} at {cancelled['at']}.")
    if status["state"] in FINAL_STATES and (status["counts"].get("failed") or status["counts"].get("cancelled")):
        lines.append(f"  Retry what failed or was cancelled: teams-upgrader retry {run_id} --watch")
    return lines


def _window(window: dict) -> str:
    return f"{window['start']}-{window['end']} {window['timeZone']} ({','.join(window.get('days') or [])})"


def history_table(runs: list[dict]) -> str:
    """One line per run, newest first."""
    if not runs:
        return "No runs."
    header = f"{'run':<32}  {'created':<20}  {'state':<11}  {'app':<36}  {'version':<9}  {'done':>11}  {'failed':>6}  started by"
    lines = [header]
    for status in runs:
        counts = status["counts"]
        done = f"{_done(counts)}/{counts.get('targets', 0)}"
        started = (status.get("startedBy") or {}).get("name", "")
        app, version = status.get("teamsAppId") or "-", status.get("targetVersion") or "-"
        lines.append(
            f"{status['runId']:<32}  {status['createdAt'][:19]:<20}  {status['state']:<11}  {app:<36}  {version:<9}  "
            f"{done:>11}  {counts.get('failed', 0):>6}  {started} ({status.get('trigger')})"
        )
    return "\n".join(lines)


def exit_code(status: dict) -> int:
    """0 completed without failures; 1 failed (or failing), or some targets failed; 3 paused; 4 cancelled
    (or cancelling); 5 waiting; 6 still going (queued, discovering, upgrading: `status` without --watch)."""
    if status["state"] in ("queued", "discovering", "upgrading"):
        return GOING
    if status["state"] == "paused":
        return PAUSED
    if status["state"] == "waiting":
        return WAITING
    if status["state"] in ("cancelled", "cancelling"):
        return CANCELLED
    return 0 if status["state"] == "completed" and status["counts"].get("failed", 0) == 0 and not status.get("error") else 1
