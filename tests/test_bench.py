"""A short benchmark run, so that the pacing cannot silently regress: against the emulator's real
limit structure, two worker processes must hold the rate close to the ceiling, never above it, with
one POST per outdated chat, and beat the sequential peer by a wide margin."""

from __future__ import annotations

import json
import os
from unittest import mock

from bench.run import main
from shared import bootstrap

LIMIT = 20


def test_short_benchmark_holds_the_ceiling(tmp_path):
    out = tmp_path / "bench.json"
    argv = [
        "--sizes",
        "400",
        "--discovery-users",
        "0",
        "--workers",
        "2",
        "--limit",
        str(LIMIT),
        "--peers",
        "requests",
        "--peer-seconds",
        "6",
        "--publish-samples",
        "20",
        "--out",
        str(out),
        "--plot",
        "",
        "--log",
        str(tmp_path / "bench.log"),
    ]
    with mock.patch.dict(os.environ):  # the benchmark sets the app's settings for its own stack
        for name in ("AzureWebJobsStorage", "GRAPH_BASE_URL", "GRAPH_MAX_RPS"):
            os.environ.pop(name, None)
        assert main(argv) == 0
    bootstrap.reset()  # clients built for the benchmark's storage, which is gone now
    results = json.loads(out.read_text())
    [scenario] = results["scenarios"]
    ours = scenario["ours"]

    assert ours["state"] == "completed" and ours["counts"]["upgraded"] == 400
    assert ours["everyOutdatedChatUpgradedOnce"] is True
    assert ours["graphRequestsPerUpgradedChat"]["upgrade"] == 1.0
    assert ours["graphRequestsPerUpgradedChat"]["getInstalledApps"] <= 1.01
    assert all(n <= LIMIT for n in ours["maxRequestsInAnyOneSecond"].values())
    assert ours["minSecondsBetweenRequestsOnOneChat"] >= 1.0
    assert ours["limiter429Share"] <= 0.005
    assert ours["steadyRatioToCeiling"] >= 0.8, ours
    assert scenario["peers"]["requests"]["oursOverPeer"] >= 5
    assert results["publish"]["10000ChatIds"]["p99Ms"] < 500
