"""The benchmark: one command, `make bench` (or `python -m bench.run`).

For each scenario it starts the local stack (Azurite, identity endpoint, Graph emulator with latency
and Graph's limit structure, the local host with N worker processes), publishes, waits for the run,
and reads the emulator's request log. Then the peers (a sequential `requests` loop and the same with
msgraph-sdk) run against a fresh emulator with the same limits and the same chats, time-boxed.
Results are printed, written as JSON, and plotted (upgrades over time) as a PNG.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import requests

from bench.peers import PeerResult, requests_loop, sdk_loop
from bench.report import render
from devtools.azurite import Azurite
from devtools.funchost import LocalHost
from devtools.graph_emulator import GraphEmulator, Limits
from devtools.identity import IdentityEndpoint
from devtools.tenant import Tenant
from shared import bootstrap

ROOT = Path(__file__).resolve().parent.parent
OLD, NEW = "2.3.0", "2.4.0"


def build_tenant(*, chats: int, users: int, seed: int = 3):
    tenant = Tenant(seed)
    people = [tenant.add_user().id for _ in range(users)]
    app = tenant.add_app("Contoso Field Service", versions=(OLD, NEW))
    rand = tenant.rand
    for _ in range(chats):
        tenant.add_chat("group", rand.sample(people, min(len(people), rand.randint(3, 6))), installed={app.id: OLD})
    return tenant, app


def reset(tenant: Tenant, app) -> None:
    for chat in tenant.chats.values():
        chat.installed[app.id] = OLD


def peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


BUSY_BUCKETS = ("installedApps.get", "installedApps.post", "teams.get")


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


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.azurite = Azurite().start()
        self.identity = IdentityEndpoint().start()
        os.environ.update(self.identity.env())
        os.environ["AzureWebJobsStorage"] = self.azurite.connection_string
        os.environ["GRAPH_MAX_RPS"] = str(args.limit)
        for name in ("AZURE_CLIENT_ID", "MSI_ENDPOINT", "IMDS_ENDPOINT", "IDENTITY_SERVER_THUMBPRINT", "DISCOVERY_GROUP_ID"):
            os.environ.pop(name, None)

    def close(self) -> None:
        self.identity.stop()
        self.azurite.stop()

    def emulator(self, tenant: Tenant) -> GraphEmulator:
        limits = Limits(bucket_rps=self.args.limit, retry_after=None)
        emulator = GraphEmulator(tenant, authority=self.identity.authority, limits=limits, latency=self.args.latency).start()
        os.environ["GRAPH_BASE_URL"] = emulator.base_url
        return emulator

    def clean(self) -> None:
        self.azurite.clear()
        bootstrap.reset()

    # ---- publish latency ---------------------------------------------------------------------------

    def publish_latency(self) -> dict:
        tenant, app = build_tenant(chats=10, users=10)
        emulator = self.emulator(tenant)
        self.clean()
        host = LocalHost(ROOT / "function_app.py", http_port=0, queue_workers=None, run_timers=False).start()
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
                    started = time.perf_counter()
                    response = session.post(url, data=data)
                    times.append((time.perf_counter() - started) * 1000)
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

    # ---- one scenario ------------------------------------------------------------------------------

    def ours(self, tenant: Tenant, app, *, discover: bool) -> tuple[dict, list[float]]:
        emulator = self.emulator(tenant)
        self.clean()
        host = LocalHost(
            ROOT / "function_app.py", http_port=0, queue_workers=self.args.workers, run_timers=False, worker_log=self.args.log
        ).start()
        try:
            body = {"teamsAppId": app.id} if discover else {"teamsAppId": app.id, "chatIds": list(tenant.chats)}
            started = time.time()
            response = requests.post(f"{host.base_url}/api/publish", json=body)
            run_id = response.json()["runId"]
            while True:
                status = requests.get(f"{host.base_url}/api/runs/{run_id}").json()
                if status["state"] in ("completed", "failed") and status["counts"]["pending"] == 0:
                    break
                time.sleep(1.0)
            done = time.time()
            rss = [peak_rss_mb(worker.pid) for worker in host.workers]
        finally:
            host.stop()
            emulator.stop()
        log = emulator.requests()
        upgrades = sorted(r.t for r in log if r.kind == "upgrade" and r.status == 204)
        outdated = len(tenant.chats)
        kinds = Counter(r.kind for r in log)
        throttled_by = Counter(r.throttled_by or "injected" for r in log if r.status == 429)
        throttled = sum(throttled_by.values())
        first, last = (upgrades[0], upgrades[-1]) if upgrades else (started, started)
        steady = (len(upgrades) - 1) / (last - first) if len(upgrades) > 1 else 0.0
        end_to_end = len(upgrades) / (last - started) if upgrades else 0.0
        result = {
            "state": status["state"],
            "counts": status["counts"],
            "upgradesPerSecond": round(end_to_end, 2),
            "ratioToCeiling": round(end_to_end / self.args.limit, 3),
            "steadyUpgradesPerSecond": round(steady, 2),
            "steadyRatioToCeiling": round(steady / self.args.limit, 3),
            "secondsPublishToLastUpgrade": round(last - started, 1),
            "secondsPublishToCompleted": round(done - started, 1),
            "graphRequestsPerUpgradedChat": {k: round(v / max(1, len(upgrades)), 3) for k, v in sorted(kinds.items())},
            "graphRequests": len(log),
            "limiter429": throttled,
            "limiter429Share": round(throttled / max(1, len(log)), 5),
            "limiter429ByLimit": dict(sorted(throttled_by.items())),
            "postsPerOutdatedChat": sorted(set(emulator.upgrades.values())) if emulator.upgrades else [],
            "everyOutdatedChatUpgradedOnce": len(emulator.upgrades) == outdated and set(emulator.upgrades.values()) == {1},
            "maxRequestsInAnyOneSecond": {b: emulator.max_per_window(b) for b in BUSY_BUCKETS},
            "acceptedRequestsPerSecondByBucket": bucket_rates(log),
            "minSecondsBetweenRequestsOnOneChat": round(emulator.min_chat_gap(), 3),
            "peakRssMbPerWorker": rss,
            "upgradesPer10Seconds": [
                sum(1 for t in upgrades if b <= t - started < b + 10) for b in range(0, int(last - started) + 10, 10)
            ],
        }
        return result, [t - started for t in upgrades]

    def peer(self, name: str, tenant: Tenant, app) -> tuple[dict, list[float]]:
        reset(tenant, app)
        emulator = self.emulator(tenant)
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

    def scenario(self, name: str, *, chats: int, users: int, discover: bool) -> dict:
        print(f"\n== {name}: {chats} outdated chats, {users} users, {'discovery' if discover else 'chatIds'} ==", flush=True)
        tenant, app = build_tenant(chats=chats, users=users)
        ours, ours_times = self.ours(tenant, app, discover=discover)
        print(
            f"  ours: {ours['upgradesPerSecond']}/s ({ours['ratioToCeiling']:.0%} of {self.args.limit}/s), "
            f"{ours['secondsPublishToLastUpgrade']} s to the last upgrade, 429s: {ours['limiter429']}",
            flush=True,
        )
        result = {
            "name": name,
            "outdatedChats": chats,
            "users": users,
            "discovery": discover,
            "ours": ours,
            "peers": {},
            "timelines": {"ours": ours_times},
        }
        for peer in self.args.peers:
            if discover:
                continue  # the peers get the chat list; discovery is ours alone
            measured, times = self.peer(peer, tenant, app)
            result["peers"][peer] = measured
            result["timelines"][peer] = times
            ratio = ours["upgradesPerSecond"] / measured["upgradesPerSecond"] if measured["upgradesPerSecond"] else None
            measured["oursOverPeer"] = round(ratio, 1) if ratio else None
            print(
                f"  peer {peer}: {measured['upgradesPerSecond']}/s over {measured['elapsedSeconds']} s "
                f"({measured['upgraded']} chats), ours/peer = {measured['oursOverPeer']}",
                flush=True,
            )
        return result


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenario = next((s for s in results["scenarios"] if s["peers"]), None)
    if scenario is None:
        return
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, times in scenario["timelines"].items():
        if times:
            label = "this app" if name == "ours" else f"sequential loop ({name})"
            ax.step([0, *times], range(len(times) + 1), where="post", label=label)
    ceiling = results["settings"]["limit"]
    horizon = max(max(t) for t in scenario["timelines"].values() if t)
    ax.plot([0, horizon], [0, horizon * ceiling], linestyle=":", color="grey", label=f"ceiling ({ceiling} upgrades/s)")
    ax.set_xlabel("seconds since publish")
    ax.set_ylabel("chats upgraded")
    ax.set_ylim(0, scenario["outdatedChats"] * 1.05)
    ax.set_title(f"{scenario['outdatedChats']} outdated chats, Graph limit {ceiling} req/s per bucket, 1 req/s per chat")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000", help="outdated chats per chatIds scenario")
    parser.add_argument("--discovery-users", type=int, default=5000, help="users in the discovery scenario (0: skip)")
    parser.add_argument("--discovery-chats", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=4, help="queue worker processes")
    parser.add_argument("--limit", type=int, default=30, help="the emulator's per-bucket limit, and GRAPH_MAX_RPS")
    parser.add_argument("--latency", type=float, default=0.05, help="emulated Graph latency per request, seconds")
    parser.add_argument("--peers", default="requests,msgraph-sdk")
    parser.add_argument("--peer-seconds", type=float, default=120.0, help="time box for each peer")
    parser.add_argument("--publish-samples", type=int, default=200)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "latest.json"))
    parser.add_argument("--plot", default=str(ROOT / "bench" / "results" / "upgrades-over-time.png"))
    parser.add_argument("--log", default=os.path.join(tempfile.gettempdir(), "teams-upgrader-bench.log"), help="worker logs")
    args = parser.parse_args(argv)
    args.peers = [p for p in args.peers.split(",") if p]
    logging.basicConfig(filename=args.log, level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
    bench = Bench(args)
    started = time.time()
    try:
        results = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
            "settings": {
                "limit": args.limit,
                "graphMaxRps": args.limit,
                "workers": args.workers,
                "latency": args.latency,
                "peerSeconds": args.peer_seconds,
                "retryAfter": "time until admitted (>= 1 s)",
            },
            "command": "python -m bench.run " + " ".join(argv if argv is not None else sys.argv[1:]),
        }
        print("== publish latency ==", flush=True)
        results["publish"] = bench.publish_latency()
        print("  " + json.dumps(results["publish"]), flush=True)
        scenarios = [
            bench.scenario(f"chats-{n}", chats=n, users=max(10, n // 10), discover=False)
            for n in (int(s) for s in args.sizes.split(",") if s)
        ]
        if args.discovery_users:
            scenarios.append(
                bench.scenario(
                    f"discovery-{args.discovery_users}", chats=args.discovery_chats, users=args.discovery_users, discover=True
                )
            )
        results["scenarios"] = scenarios
        results["benchSeconds"] = round(time.time() - started)
    finally:
        bench.close()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    timelines = {s["name"]: s.pop("timelines") for s in results["scenarios"]}
    out.write_text(json.dumps(results, indent=2))
    out.with_suffix(".md").write_text(render(results) + "\n")
    for s in results["scenarios"]:
        s["timelines"] = timelines[s["name"]]
    if args.plot:
        try:
            plot(results, Path(args.plot))
        except ImportError:
            print("matplotlib is not installed: no plot (pip install -r bench/requirements.txt)")
    print(f"\nWrote {out}, {out.with_suffix('.md')}" + (f" and {args.plot}" if args.plot else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
