"""The one-command demo, on a small tenant: everything starts, the run completes, everything stops."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_upgrades_every_outdated_installation_and_reports_the_blocked_ones():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "devtools.stack",
            "demo",
            "--users",
            "40",
            "--chats",
            "80",
            "--teams",
            "10",
            "--port",
            "0",
            "--workers",
            "1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Demo OK" in result.stdout
    assert "Failed (" in result.stdout and "403 Forbidden: App is blocked by app permission policy" in result.stdout
    assert "because this team is archived" in result.stdout
    header = next(line for line in result.stdout.splitlines() if line.strip().startswith("outcome"))
    assert header.split() == ["outcome", "chats", "teams", "users", "total"]
    assert "State: completed" in result.stdout
