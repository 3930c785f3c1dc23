"""Renders a benchmark result (bench/results/latest.json) as the Markdown table the README shows."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def render(results: dict) -> str:
    limit = results["settings"]["limit"]
    lines = [
        f"Measured {results['date']} on {results['machine']['cpus']} CPUs (Python {results['machine']['python']}), "
        f"`{results['command'].strip()}`: emulator limit and `GRAPH_MAX_RPS` {limit} requests/s per bucket, "
        f"1 request/s per chat, {results['settings']['latency'] * 1000:.0f} ms latency per request, "
        f"{results['settings']['workers']} worker processes; Retry-After is the time until Graph would admit the request.",
        "",
        "| scenario | upgrades/s (ratio to ceiling) | steady state | publish → last upgrade "
        "| Graph requests per chat | 429s (limit hit) | peak RSS per worker |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in results["scenarios"]:
        o = s["ours"]
        per_chat = ", ".join(f"{k} {v:g}" for k, v in o["graphRequestsPerUpgradedChat"].items() if v >= 0.01)
        if s["discovery"] and "teams.get" in o.get("acceptedRequestsPerSecondByBucket", {}):
            per_chat += f" (List chats at {o['acceptedRequestsPerSecondByBucket']['teams.get']:g}/s)"
        once = "" if o["everyOutdatedChatUpgradedOnce"] else " (NOT once per chat!)"
        what = f"{s['outdatedChats']:,} outdated chats" + (f", {s['users']:,} users, discovery" if s["discovery"] else "")
        rate = f"{o['upgradesPerSecond']:g} ({o['ratioToCeiling']:.2f})"
        steady = f"{o['steadyUpgradesPerSecond']:g} ({o['steadyRatioToCeiling']:.2f})"
        throttled = f"{o['limiter429']} ({o['limiter429Share'] * 100:.3f}%)"
        if o.get("limiter429ByLimit"):
            throttled += ": " + ", ".join(f"{k} {v}" for k, v in o["limiter429ByLimit"].items())
        rss = max((r for r in o["peakRssMbPerWorker"] if r), default=None)  # None where /proc is missing
        lines.append(
            f"| {s['name']} ({what}) | {rate} | {steady} | {o['secondsPublishToLastUpgrade']:g} s "
            f"| {per_chat}{once} | {throttled} | {'n/a' if rss is None else f'{rss:g} MB'} |"
        )
    lines += ["", "| scenario | peer | upgrades/s | ours / peer | projected time for all chats |", "|---|---|---|---|---|"]
    for s in results["scenarios"]:
        for name, p in s["peers"].items():
            ratio = "n/a" if p["oursOverPeer"] is None else f"**{p['oursOverPeer']:g}x**"  # the peer upgraded nothing
            projected = "n/a" if p["projectedSecondsForAll"] is None else f"{p['projectedSecondsForAll'] / 3600:.1f} h"
            lines.append(
                f"| {s['name']} | sequential loop, {name} | {p['upgradesPerSecond']:g} (over {p['elapsedSeconds']:g} s, "
                f"{p['upgraded']} chats) | {ratio} | {projected} |"
            )
    pub = results["publish"]
    lines += [
        "",
        "`POST /api/publish` latency (HTTP round trip, local host): "
        f"no chatIds p50 {pub['noChatIds']['p50Ms']:g} ms / p99 {pub['noChatIds']['p99Ms']:g} ms; "
        f"10,000 chatIds ({pub['10000ChatIds']['bodyBytes'] / 1024:.0f} KiB) p50 {pub['10000ChatIds']['p50Ms']:g} ms / "
        f"p99 {pub['10000ChatIds']['p99Ms']:g} ms.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    path = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "results" / "latest.json")
    print(render(json.loads(path.read_text())))
