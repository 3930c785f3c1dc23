"""The benchmark: one command, `make bench` (or `python -m bench.run`).

Each scenario starts the local stack (Azurite, identity endpoint, Graph emulator with latency and
Graph's limit structure, the local host with N worker processes), publishes, waits for the run,
and reads the emulator's request log. The peers (a sequential `requests` loop and the same with
msgraph-sdk) run against a fresh emulator with the same limits and the same chats, time-boxed.
Results are printed, written as JSON and Markdown, and plotted (upgrades over time per scenario).
`--scale` runs the storage simulation instead (see bench/scale.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import shlex
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import requests

from bench.peers import PeerResult, requests_loop, sdk_loop
from bench.report import render
from devtools.azurite import Azurite
from devtools.funchost import HostConfig, LocalHost
from devtools.graph_limits import Limits
from devtools.graph_process import EmulatorProcess
from devtools.identity import IdentityEndpoint
from devtools.loopback import max_in_window
from devtools.tenant import Tenant
from shared import bootstrap

TIMEOUT = 60  # seconds for one API call of the benchmark
STATUS_POLL = 1.0  # seconds between status reads while a run goes on, as `teams-upgrader status --watch`

ROOT = Path(__file__).resolve().parent.parent
OLD, NEW = "2.3.0", "2.4.0"
GETS = {"getInstalledApps", "getTeamInstalledApps", "getUserInstalledApps"}
UPGRADES = {"upgrade", "upgradeTeam", "upgradeUser"}
BUSY_BUCKETS = ("installedApps.get", "installedApps.teamUser.get", "installedApps.post", "teams.get")
# a worker's log line saying how far its clock is from storage's (shared.foundation.shared_clock)
CLOCK_SAID = re.compile(r"^\S+ \S+ (\d+) upgrader\.events Clock: this host's clock is ([+-][\d.]+) s off .*\(±([\d.]+) s\)")


@dataclass(frozen=True)
class Scenario:
    """One measured run. Without `discovery_users`, the run is given its targets' ids."""

    name: str
    chats: int = 0
    teams: int = 0
    users_with_app: int = 0  # personal-scope installations
    discovery_users: int = 0  # > 0: discover the chats among this many users
    workers: int = 4
    limit: int = 30  # the emulator's per-bucket limit, and GRAPH_MAX_RPS
    latency: float = 0.05
    polling: float | None = None  # a cap on the queue listeners' longest polling interval (None: host.json's)
    peers: bool = False
    clock_shifts: tuple[float, ...] = ()  # seconds by which each worker's wall clock runs off (the rest: none)

    @property
    def outdated(self) -> int:
        return self.chats + self.teams + self.users_with_app

    @property
    def scopes(self) -> list[str]:
        return [s for s, n in (("chat", self.chats), ("team", self.teams), ("personal", self.users_with_app)) if n]


HARNESS = {"workers": 2, "limit": 40, "latency": 0.02, "polling": 1.0}  # the shape of issue 12's harness
# issue 25: 1,000 chats in the harness's shape, with the wall clock of one worker (or both) off
SKEW = [
    Scenario(name, chats=1000, clock_shifts=shifts, **HARNESS)
    for name, shifts in (
        ("skew0", (0.0, 0.0)),
        ("skew+0.1", (0.0, 0.1)),
        ("skew+0.3", (0.0, 0.3)),
        ("skew-0.3", (0.0, -0.3)),
        ("skew+1", (0.0, 1.0)),
        ("skew-1", (0.0, -1.0)),
        ("skew+1/-1", (1.0, -1.0)),
    )
]
GROUPS = {"skew": [s.name for s in SKEW]}  # `--only skew`
SUITE = [
    Scenario("harness-300", chats=300, **HARNESS),
    Scenario("harness-3000", chats=3000, **HARNESS),
    Scenario("chats-1000", chats=1000, peers=True),
    Scenario("chats-1000-w1", chats=1000, workers=1),
    Scenario("chats-1000-w2", chats=1000, workers=2),
    Scenario("chats-10000", chats=10000),
    Scenario("chats-3300", chats=3300),
    Scenario("mixed-3300", chats=1000, teams=300, users_with_app=2000),
    Scenario("discovery-5000", chats=2000, discovery_users=5000),
    *SKEW,
]


def build_tenant(s: Scenario, seed: int = 3) -> tuple[Tenant, object]:
    tenant = Tenant(seed)
    people = [tenant.add_user().id for _ in range(max(s.discovery_users, s.users_with_app, 10, s.chats // 10))]
    app = tenant.add_app("Contoso Field Service", versions=(OLD, NEW))
    rand = tenant.rand
    for _ in range(s.chats):
        tenant.add_chat("group", rand.sample(people, min(len(people), rand.randint(3, 6))), installed={app.id: OLD})
    for _ in range(s.teams):
        tenant.add_team(rand.sample(people, min(len(people), 8)), installed={app.id: OLD})
    for user_id in people[: s.users_with_app]:
        tenant.users[user_id].installed[app.id] = OLD
    return tenant, app


def reset(tenant: Tenant, app) -> None:
    for place in [*tenant.chats.values(), *tenant.teams.values(), *tenant.users.values()]:
        if app.id in place.installed:
            place.installed[app.id] = OLD


def peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User and system CPU time a process has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bucket_rates(log) -> dict[str, float]:
    """Requests per second that each busy bucket admitted (not 429), from its first to its last."""
    rates = {}
    for bucket in BUSY_BUCKETS:
        times = sorted(r.t for r in log if r.bucket == bucket and r.status != 429)
        if len(times) > 1 and times[-1] > times[0]:
            rates[bucket] = round((len(times) - 1) / (times[-1] - times[0]), 2)
    return rates


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def per_second(times: list[float], start: float, end: float) -> list[int]:
    counts = Counter(int(t - start) for t in times)
    return [counts.get(second, 0) for second in range(int(end - start) + 1)]


def clock_offsets(log: Path, since: int, pids: list[int]) -> list[dict | None]:
    """What each worker process said last of its clock's offset from storage's, in the worker log
    written from byte `since` on (None: it said nothing)."""
    said: dict[int, dict] = {}
    if log.exists():
        with log.open("rb") as f:
            f.seek(since)
            for line in f.read().decode(errors="replace").splitlines():
                match = CLOCK_SAID.match(line)
                if match:
                    said[int(match.group(1))] = {"seconds": float(match.group(2)), "error": float(match.group(3))}
    return [said.get(pid) for pid in pids]


def publish_body(s: Scenario, tenant: Tenant, app) -> dict:
    if s.discovery_users:
        return {"teamsAppId": app.id, "scopes": s.scopes}
    body: dict = {"teamsAppId": app.id}
    if s.chats:
        body["chatIds"] = list(tenant.chats)
    if s.teams:
        body["teamIds"] = list(tenant.teams)
    if s.users_with_app:
        body["userIds"] = [u for u, user in tenant.users.items() if app.id in user.installed]
    return body


def measure(s: Scenario, log, started: float, status: dict, emulator: EmulatorProcess) -> dict:
    """What the emulator saw of one run, against the ceiling of the scenario."""
    upgrades = sorted(r.t for r in log if r.kind in UPGRADES and r.status == 204)
    gets = sorted(r.t for r in log if r.kind in GETS)
    kinds = Counter(r.kind for r in log)
    throttled_by = Counter(r.throttled_by or "injected" for r in log if r.status == 429)
    throttled = sum(throttled_by.values())
    first, last = (upgrades[0], upgrades[-1]) if upgrades else (started, started)
    steady = (len(upgrades) - 1) / (last - first) if len(upgrades) > 1 else 0.0
    end_to_end = len(upgrades) / (last - started) if upgrades else 0.0
    return {
        "state": status["state"],
        "counts": status["counts"],
        "upgradesPerSecond": round(end_to_end, 2),
        "ratioToCeiling": round(end_to_end / s.limit, 3),
        "steadyUpgradesPerSecond": round(steady, 2),
        "steadyRatioToCeiling": round(steady / s.limit, 3),
        "secondsPublishToFirstGet": round(gets[0] - started, 2) if gets else None,
        "secondsPublishToLastUpgrade": round(last - started, 1),
        "graphRequestsPerUpgrade": {k: round(v / max(1, len(upgrades)), 3) for k, v in sorted(kinds.items())},
        "graphRequests": len(log),
        "limiter429": throttled,
        "limiter429Share": round(throttled / max(1, len(log)), 5),
        "limiter429ByLimit": dict(sorted(throttled_by.items())),
        "limiter429At": [round(r.t - started, 1) for r in log if r.status == 429],
        "everyOutdatedTargetUpgradedOnce": len(emulator.upgrades) == s.outdated and set(emulator.upgrades.values()) == {1},
        "maxRequestsInAnyOneSecond": {
            b: max_in_window([r.t for r in log if r.bucket == b and r.status != 429]) for b in BUSY_BUCKETS
        },
        # what the app sent, the requests Graph refused included: over the limit, the bucket was overrun
        "maxSentInAnyOneSecond": {b: max_in_window([r.t for r in log if r.bucket == b]) for b in BUSY_BUCKETS},
        "acceptedRequestsPerSecondByBucket": bucket_rates(log),
        "minSecondsBetweenRequestsOnOneChat": round(emulator.min_chat_gap(), 3),
        "maxRequestsOnOneTeamInAnyOneSecond": emulator.max_per_resource_window("team"),
        "getsPerSecond": per_second(gets, started, last),
        "upgradesPerSecondSeries": per_second(upgrades, started, last),
    }


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.azurite = Azurite().start()
        self.identity = IdentityEndpoint().start()
        os.environ.update(self.identity.env())
        os.environ["AzureWebJobsStorage"] = self.azurite.connection_string
        os.environ["UPGRADE_SCOPES"] = "chat,team,personal"
        for name in ("AZURE_CLIENT_ID", "MSI_ENDPOINT", "IMDS_ENDPOINT", "IDENTITY_SERVER_THUMBPRINT", "DISCOVERY_GROUP_ID"):
            os.environ.pop(name, None)

    def close(self) -> None:
        self.identity.stop()
        self.azurite.stop()

    def emulator(self, tenant: Tenant, s: Scenario) -> EmulatorProcess:
        """Graph, in a process of its own (see devtools.graph_process)."""
        limits = Limits(bucket_rps=s.limit, retry_after=None)
        emulator = EmulatorProcess(tenant, authority=self.identity.authority, limits=limits, latency=s.latency).start()
        os.environ["GRAPH_BASE_URL"] = emulator.base_url
        os.environ["GRAPH_MAX_RPS"] = str(s.limit)
        return emulator

    def clean(self) -> None:
        self.azurite.clear()
        bootstrap.reset()

    def host(self, s: Scenario, **options) -> LocalHost:
        configured = HostConfig.load(ROOT / "host.json").queues.max_polling_interval
        overrides = {"max_polling_interval": min(configured, s.polling)} if s.polling else {}
        return LocalHost(
            ROOT / "function_app.py",
            http_port=0,
            run_timers=False,
            worker_log=self.args.log,
            queue_overrides=overrides,
            **options,
        ).start()

    def publish_latency(self) -> dict:
        s = Scenario("publish", chats=10)
        tenant, app = build_tenant(s)
        emulator = self.emulator(tenant, s)
        self.clean()
        host = self.host(s, queue_workers=None)
        session = requests.Session()
        url = f"{host.base_url}/api/publish"
        big = {"teamsAppId": app.id, "dryRun": True, "chatIds": [f"19:{i:032x}@thread.v2" for i in range(10_000)]}
        small = {"teamsAppId": app.id, "dryRun": True}
        result = {}
        try:
            for name, body, count in (
                ("noChatIds", small, max(1, self.args.publish_samples)),
                ("10000ChatIds", big, max(1, self.args.publish_samples // 4)),
            ):
                data = json.dumps(body).encode()
                session.post(url, data=data)  # warm-up
                times = []
                for _ in range(count):
                    began = time.perf_counter()
                    response = session.post(url, data=data)
                    times.append((time.perf_counter() - began) * 1000)
                    assert response.status_code == 202, response.text
                result[name] = {
                    "n": count,
                    "bodyBytes": len(data),
                    "p50Ms": round(percentile(times, 0.5), 1),
                    "p99Ms": round(percentile(times, 0.99), 1),
                    "maxMs": round(max(times), 1),
                }
        finally:
            host.stop()
            emulator.stop()
        return result

    def ours(self, s: Scenario, tenant: Tenant, app) -> tuple[dict, list[float]]:
        emulator = self.emulator(tenant, s)
        self.clean()
        worker_log = Path(self.args.log)
        log_start = worker_log.stat().st_size if worker_log.exists() else 0
        host = self.host(s, queue_workers=s.workers, clock_shifts=s.clock_shifts)
        pids = [worker.pid for worker in host.workers]
        storage_cpu = cpu_seconds(self.azurite.pid)
        try:
            started = time.time()
            response = requests.post(f"{host.base_url}/api/publish", json=publish_body(s, tenant, app), timeout=TIMEOUT)
            run_id = response.json()["runId"]
            while True:
                status = requests.get(f"{host.base_url}/api/runs/{run_id}", timeout=TIMEOUT).json()
                if status["state"] in ("completed", "failed") and status["counts"]["pending"] == 0:
                    break
                time.sleep(STATUS_POLL)
            rss = [peak_rss_mb(worker.pid) for worker in host.workers]
            cpu = [cpu_seconds(worker.pid) for worker in host.workers]
            storage_cpu = (cpu_seconds(self.azurite.pid) or 0) - (storage_cpu or 0)
        finally:
            host.stop()
            emulator.stop()
        log = emulator.requests()
        result = measure(s, log, started, status, emulator)
        result["peakRssMbPerWorker"] = rss
        result["clockOffsets"] = clock_offsets(worker_log, log_start, pids)
        targets = max(1, status["counts"]["targets"])
        result["cpuMsPerTarget"] = {
            "workers": round(sum(c or 0 for c in cpu) * 1000 / targets, 1),
            "storageEmulator": round(storage_cpu * 1000 / targets, 1),
        }
        return result, [r.t - started for r in sorted(log, key=lambda r: r.t) if r.kind in UPGRADES and r.status == 204]

    def peer(self, name: str, s: Scenario, tenant: Tenant, app) -> tuple[dict, list[float]]:
        reset(tenant, app)
        emulator = self.emulator(tenant, s)
        token, _ = self.identity.authority.issue("https://graph.microsoft.com")
        loop = requests_loop if name == "requests" else sdk_loop
        try:
            outcome: PeerResult = loop(emulator.base_url, token, app.id, NEW, list(tenant.chats), self.args.peer_seconds)
        finally:
            emulator.stop()
        result = outcome.to_json()
        result["limiter429"] = len(emulator.requests(status=429))
        rate = result["upgradesPerSecond"]
        result["projectedSecondsForAll"] = round(len(tenant.chats) / rate, 0) if rate else None
        return result, outcome.upgrade_times

    def scenario(self, s: Scenario) -> dict:
        what = ", ".join(f"{n} {k}" for k, n in (("chats", s.chats), ("teams", s.teams), ("users", s.users_with_app)) if n)
        how = f"discovery among {s.discovery_users} users" if s.discovery_users else "ids given"
        print(f"\n== {s.name}: {what} outdated, {how}; {s.workers} workers, limit {s.limit}/s ==", flush=True)
        tenant, app = build_tenant(s)
        ours, ours_times = self.ours(s, tenant, app)
        print(
            f"  ours: {ours['upgradesPerSecond']}/s ({ours['ratioToCeiling']:.0%} of {s.limit}/s), first GET "
            f"{ours['secondsPublishToFirstGet']} s, last upgrade {ours['secondsPublishToLastUpgrade']} s, "
            f"429s: {ours['limiter429']}, max/s: {max(ours['maxRequestsInAnyOneSecond'].values())}, "
            f"CPU ms per target: {ours['cpuMsPerTarget']}",
            flush=True,
        )
        if s.clock_shifts:
            print(f"  {skew_line(s, ours)}", flush=True)
        result = {**asdict(s), "outdatedTargets": s.outdated, "ours": ours, "peers": {}, "timelines": {"ours": ours_times}}
        if s.peers:
            for peer in self.args.peers:
                measured, times = self.peer(peer, s, tenant, app)
                result["peers"][peer] = measured
                result["timelines"][peer] = times
                ratio = ours["upgradesPerSecond"] / measured["upgradesPerSecond"] if measured["upgradesPerSecond"] else None
                measured["oursOverPeer"] = round(ratio, 1) if ratio else None
                print(f"  peer {peer}: {measured['upgradesPerSecond']}/s, ours/peer = {measured['oursOverPeer']}", flush=True)
        return result


def skew_line(s: Scenario, ours: dict) -> str:
    """A skew scenario in one line: throughput, what went over the limit, and the busiest second."""
    clocks = ", ".join(f"{shift:+g} s" for shift in s.clock_shifts)
    said = ", ".join("not said" if o is None else f"{o['seconds']:+.4f} s (±{o['error']:.4f})" for o in ours["clockOffsets"])
    return (
        f"worker clocks {clocks}: {ours['ratioToCeiling']:.2f} of the ceiling, over the limit {ours['limiter429']} "
        f"({ours['limiter429Share']:.2%}), most sent in one second {max(ours['maxSentInAnyOneSecond'].values())}; "
        f"the workers found their clocks off by {said}"
    )


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = results["scenarios"]
    columns = 3
    rows = -(-len(scenarios) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5 * columns, 3.6 * rows), squeeze=False)
    for ax, s in zip(axes.flat, scenarios, strict=False):
        for name, times in s["timelines"].items():
            if times:
                label = "this app" if name == "ours" else f"sequential loop ({name})"
                ax.step([0, *times], range(len(times) + 1), where="post", label=label)
        horizon = max((max(t) for t in s["timelines"].values() if t), default=1)
        ax.plot([0, horizon], [0, horizon * s["limit"]], linestyle=":", color="grey", label=f"ceiling ({s['limit']}/s)")
        ax.set_ylim(0, s["outdatedTargets"] * 1.05)
        ours = s["ours"]
        ax.set_title(f"{s['name']}: {ours['ratioToCeiling']:.2f} of the ceiling", fontsize=10)
        ax.set_xlabel("seconds since publish", fontsize=8)
        ax.set_ylabel("upgraded", fontsize=8)
        ax.legend(loc="lower right", fontsize=7)
    for ax in list(axes.flat)[len(scenarios) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def selected(only: str) -> list[Scenario]:
    names = [n for group in only.split(",") if group for n in GROUPS.get(group, [group])]
    if not names:
        return SUITE
    known = {s.name: s for s in SUITE}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join([*known, *GROUPS])}")
    return [known[n] for n in names]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated scenarios or groups ({', '.join(GROUPS)}; default: all of {', '.join(s.name for s in SUITE)})",
    )
    parser.add_argument("--chats", type=int, help="override the chats of the selected scenarios")
    parser.add_argument("--workers", type=int, help="override the worker processes of the selected scenarios")
    parser.add_argument("--peers", default="requests,msgraph-sdk")
    parser.add_argument("--peer-seconds", type=float, default=120.0, help="time box for each peer")
    parser.add_argument("--publish-samples", type=int, default=200)
    parser.add_argument("--scale", action="store_true", help="run the storage simulation (bench/scale.py) instead")
    parser.add_argument("--scale-sizes", default="1000,10000", help="chats of the storage simulation's runs")
    parser.add_argument("--purge", type=int, metavar="N", help="measure RUN_RETENTION's purge of a run of N targets")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "latest.json"))
    parser.add_argument("--plot", default=str(ROOT / "bench" / "results" / "upgrades-over-time.png"))
    parser.add_argument("--log", default=os.path.join(tempfile.gettempdir(), "teams-upgrader-bench.log"), help="worker logs")
    args = parser.parse_args(argv)
    args.peers = [p for p in args.peers.split(",") if p]
    args.scale_sizes = [int(n) for n in args.scale_sizes.split(",") if n]
    logging.basicConfig(filename=args.log, level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
    if args.purge:
        from bench.purge import run_purge

        return run_purge(args)
    if args.scale:
        from bench.scale import run_scale

        return run_scale(args)
    scenarios = [
        replace(s, **{k: v for k, v in (("chats", args.chats), ("workers", args.workers)) if v is not None})
        for s in selected(args.only)
    ]
    bench = Bench(args)
    started = time.time()
    try:
        results = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
            "settings": {"peerSeconds": args.peer_seconds, "retryAfter": "time until admitted (>= 1 s)"},
            "command": shlex.join(["python", "-m", "bench.run", *(argv if argv is not None else sys.argv[1:])]),
        }
        print("== publish latency ==", flush=True)
        results["publish"] = bench.publish_latency()
        print("  " + json.dumps(results["publish"]), flush=True)
        results["scenarios"] = [bench.scenario(s) for s in scenarios]
        results["benchSeconds"] = round(time.time() - started)
    finally:
        bench.close()
    write(results, Path(args.out), args.plot)
    return 0


def write(results: dict, out: Path, plot_path: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    timelines = {s["name"]: s.pop("timelines") for s in results["scenarios"]}
    out.write_text(json.dumps(results, indent=2))
    out.with_suffix(".md").write_text(render(results) + "\n")
    for s in results["scenarios"]:
        s["timelines"] = timelines[s["name"]]
    if plot_path:
        try:
            plot(results, Path(plot_path))
        except ImportError:
            print("matplotlib is not installed: no plot (pip install -r bench/requirements.txt)")
    print(f"\nWrote {out}, {out.with_suffix('.md')}" + (f" and {plot_path}" if plot_path else ""))


if __name__ == "__main__":
    sys.exit(main())
