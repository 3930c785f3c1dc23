"""Renders a benchmark result (bench/results/latest.json) as the Markdown tables docs/performance.md shows."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _what(s: dict) -> str:
    parts = [f"{s[k]:,} {noun}" for k, noun in (("chats", "chats"), ("teams", "teams"), ("users_with_app", "users")) if s[k]]
    how = f", discovery among {s['discovery_users']:,} users" if s["discovery_users"] else ""
    return " + ".join(parts) + how


def _shape(s: dict) -> str:
    polling = f", polling ≤ {s['polling']:g} s" if s["polling"] else ""
    return f"{s['workers']} workers, {s['limit']}/s, {s['latency'] * 1000:.0f} ms{polling}"


def skew_table(results: dict) -> list[str]:
    """The scenarios whose workers' clocks disagree: throughput, and whether Graph's limit held."""
    skewed = [s for s in results["scenarios"] if s.get("clock_shifts")]
    if not skewed:
        return []
    lines = [
        "",
        "| scenario | worker clocks | upgrades/s ÷ ceiling | requests over the limit (429s) | most requests sent in 1 s "
        "| first GET | offsets the workers estimated |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in skewed:
        o = s["ours"]
        clocks = ", ".join(f"{shift:+g} s" for shift in s["clock_shifts"])
        sent = max(o["maxSentInAnyOneSecond"].values(), default=0)
        said = ", ".join(
            "n/a" if x is None else f"{x['seconds']:+.3f} s (±{x['error'] * 1000:.1f} ms)" for x in o.get("clockOffsets", [])
        )
        lines.append(
            f"| {s['name']} | {clocks} | {o['ratioToCeiling']:.2f} | {o['limiter429']} ({o['limiter429Share'] * 100:.2f} %) "
            f"| {sent} | {o['secondsPublishToFirstGet']} s | {said} |"
        )
    return lines


def render(results: dict) -> str:
    lines = [
        f"Measured {results['date']} on {results['machine']['cpus']} CPUs (Python {results['machine']['python']}), "
        f"`{results['command'].strip()}`. In each scenario the emulator's limit per bucket equals `GRAPH_MAX_RPS`, "
        "1 request/s per chat and 4 per team; Retry-After is the time until Graph would admit the request; "
        "upgrades/s run from the publish request to the last successful upgrade.",
        "",
        "| scenario | outdated targets | shape | upgrades/s (of the ceiling) | steady state | first GET | publish → last upgrade "
        "| most requests in any 1 s | 429s (limit hit) | Graph requests per upgrade |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in results["scenarios"]:
        o = s["ours"]
        per = ", ".join(f"{k} {v:g}" for k, v in o["graphRequestsPerUpgrade"].items() if v >= 0.01)
        once = "" if o["everyOutdatedTargetUpgradedOnce"] else " (NOT once per target!)"
        peak = max(o["maxRequestsInAnyOneSecond"].values(), default=0)
        throttled = f"{o['limiter429']} ({o['limiter429Share'] * 100:.3f}%)"
        if o.get("limiter429ByLimit"):
            throttled += ": " + ", ".join(f"{k} {v}" for k, v in o["limiter429ByLimit"].items())
        lines.append(
            f"| {s['name']} | {_what(s)} | {_shape(s)} | {o['upgradesPerSecond']:g} ({o['ratioToCeiling']:.2f}) "
            f"| {o['steadyUpgradesPerSecond']:g} ({o['steadyRatioToCeiling']:.2f}) | {o['secondsPublishToFirstGet']} s "
            f"| {o['secondsPublishToLastUpgrade']:g} s | {peak} | {throttled} | {per}{once} |"
        )
    lines += skew_table(results)
    peers = [(s, name, p) for s in results["scenarios"] for name, p in s["peers"].items()]
    if peers:
        lines += ["", "| scenario | peer | upgrades/s | ours / peer | projected time for all chats |", "|---|---|---|---|---|"]
        for s, name, p in peers:
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
