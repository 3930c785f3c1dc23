"""The Graph emulator in a process of its own, as the benchmark runs it.

Graph is a remote service: the moment it counts a request against a limit must not depend on the
load of the process that runs the app's HTTP host. In one process, a status read holding the
interpreter for a few milliseconds delays the emulator's clock, so requests that were sent on time
look bunched, and the emulator answers a 429 that Graph would not have. Here the emulator gets a
copy of the tenant, serves until it is stopped, and hands over its request log then. The tenant
is frozen out of the garbage collector: a full collection over it held the process for up to
90 ms, and the requests that arrived meanwhile were counted together when it ended.

  python -m devtools.graph_process <spec file>   (started by EmulatorProcess, not by hand)
"""

from __future__ import annotations

import gc
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

import requests

from devtools.graph_emulator import GraphEmulator
from devtools.graph_limits import Limits, Request, RequestLog
from devtools.identity import TokenAuthority
from devtools.tenant import Tenant

ROOT = Path(__file__).resolve().parent.parent


class EmulatorProcess(RequestLog):
    """A GraphEmulator in a child process: `base_url` while it runs; `requests()` and `upgrades`
    once stopped."""

    def __init__(self, tenant: Tenant, *, authority: TokenAuthority, limits: Limits, latency: float = 0.0) -> None:
        self._spec = pickle.dumps((tenant, authority, limits, latency))
        self._child: subprocess.Popen | None = None
        self.base_url = ""
        self.log: list[Request] = []
        self.upgrades: dict[str, int] = {}

    def start(self) -> EmulatorProcess:
        with tempfile.NamedTemporaryFile(suffix=".spec", delete=False) as spec:
            spec.write(self._spec)
        self._child = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "devtools.graph_process", spec.name],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self._child.stdout.readline().strip()
        Path(spec.name).unlink(missing_ok=True)
        if not line.startswith("http://"):
            self._child.kill()
            raise RuntimeError(f"the Graph emulator process did not start (exit code {self._child.wait()})")
        self.base_url = line
        return self

    def stop(self) -> None:
        """Takes the emulator's log and ends its process."""
        if self._child is None:
            return
        try:
            answer = requests.get(self.base_url.replace("/v1.0", "/_emulator/log"), timeout=60).json()
            self.log = [Request(**r) for r in answer["requests"]]
            self.upgrades = answer["upgrades"]
        finally:
            self._child.stdin.close()  # the child stops when its input ends
            try:
                self._child.wait(10)
            except subprocess.TimeoutExpired:
                self._child.kill()
            self._child = None

    def requests(self, kind: str | None = None, status: int | None = None) -> list[Request]:
        if self._child is not None:
            raise RuntimeError("the log is read when the emulator stops")
        return [r for r in self.log if (kind is None or r.kind == kind) and (status is None or r.status == status)]


def main(spec: str) -> int:
    tenant, authority, limits, latency = pickle.loads(Path(spec).read_bytes())  # noqa: S301 - written by our parent
    emulator = GraphEmulator(tenant, authority=authority, limits=limits, latency=latency).start()
    gc.collect()
    gc.freeze()
    print(emulator.base_url, flush=True)
    sys.stdin.read()  # until the parent closes it
    emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
