"""The one-command demo, on a small tenant: everything starts, the run completes, everything stops."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_demo_upgrades_every_outdated_chat_and_reports_the_blocked_ones():
    result = subprocess.run(
        [sys.executable, "-m", "devtools.stack", "demo", "--users", "40", "--chats", "80", "--port", "0", "--workers", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Demo OK" in result.stdout
    assert "Failed chats" in result.stdout and "403 Forbidden: App is blocked by app permission policy" in result.stdout
    assert "State: completed" in result.stdout
