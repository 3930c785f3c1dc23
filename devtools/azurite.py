"""Starts Azurite (the storage emulator, from node_modules) on free loopback ports."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from pathlib import Path

from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueServiceClient

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
LISTENING = re.compile(r"Azurite (Blob|Queue|Table) service is successfully listening at (https?)://127\.0\.0\.1:(\d+)")


class AzuriteError(RuntimeError):
    pass


class Azurite:
    """`with Azurite() as azurite:` gives `connection_string`, `queue_url`, `table_url`."""

    def __init__(
        self,
        *,
        location: str | None = None,
        oauth_cert: tuple[str, str] | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        self._location = location
        self._oauth_cert = oauth_cert  # (cert.pem, key.pem): HTTPS with bearer-token auth
        self._timeout = startup_timeout
        self._process: subprocess.Popen | None = None
        self.ports: dict[str, int] = {}
        self.scheme = "https" if oauth_cert else "http"

    @staticmethod
    def binary() -> str:
        local = ROOT / "node_modules" / ".bin" / "azurite"
        if local.exists():
            return str(local)
        found = shutil.which("azurite")
        if not found:
            raise AzuriteError("Azurite is not installed: run `npm ci` in the repository (Node.js 20+).")
        return found

    def start(self) -> Azurite:
        args = [
            self.binary(),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            "0",
            "--queueHost",
            "127.0.0.1",
            "--queuePort",
            "0",
            "--tableHost",
            "127.0.0.1",
            "--tablePort",
            "0",
            "--disableTelemetry",
            "--skipApiVersionCheck",
            "--loose",
        ]
        if self._location is None:
            # nothing outlives the process anyway: on disk, Azurite writes its whole database every
            # few seconds, a pause that grows with the data
            args.append("--inMemoryPersistence")
        else:
            args += ["--location", self._location]
        if self._oauth_cert:
            args += ["--oauth", "basic", "--cert", self._oauth_cert[0], "--key", self._oauth_cert[1]]
        self._process = subprocess.Popen(  # noqa: S603 - our fixed argv: the pinned azurite binary
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        ready = threading.Event()
        output: list[str] = []

        def read() -> None:
            if not (self._process and self._process.stdout):
                raise RuntimeError("azurite is not started")
            for line in self._process.stdout:
                output.append(line)
                match = LISTENING.search(line)
                if match:
                    self.ports[match.group(1).lower()] = int(match.group(3))
                    if len(self.ports) == 3:
                        ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(self._timeout) or len(self.ports) != 3:
            self.stop()
            raise AzuriteError("Azurite did not start:\n" + "".join(output[-20:]))
        return self

    def stop(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
        self._process = None

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def clear(self) -> None:
        """Deletes every queue and table: a clean account for the next test or scenario."""
        queues = QueueServiceClient.from_connection_string(self.connection_string)
        for queue in queues.list_queues():
            queues.delete_queue(queue.name)
        tables = TableServiceClient.from_connection_string(self.connection_string)
        for table in tables.list_tables():
            tables.delete_table(table.name)

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("not started")
        return self._process.pid

    def url(self, service: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.ports[service]}/{ACCOUNT}"

    @property
    def queue_url(self) -> str:
        return self.url("queue")

    @property
    def table_url(self) -> str:
        return self.url("table")

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol={self.scheme};AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={self.url('blob')};QueueEndpoint={self.queue_url};TableEndpoint={self.table_url};"
        )
