"""A local Azure Functions host for this machine, where Core Tools cannot be installed.

It loads function_app.py through `app.get_functions()` (nothing is hard-coded per function) and
serves every HTTP route on http://127.0.0.1:7071/api/..., runs every queue trigger against the
storage account in AzureWebJobsStorage with the host's rules from host.json (base64 or none,
batchSize/newBatchThreshold concurrency, visibilityTimeout after a failure, dequeue count,
<queue>-poison after maxDequeueCount), timer triggers on their NCRONTAB schedule, and writes queue
output bindings to the real queues. Queue triggers can run in N worker processes.

A message written by an output binding wakes the listener of its queue at once instead of at its
next poll, as the real host's shared queue watcher does on the instance that wrote it (with worker
processes: one of them, in turn).

Differences from the real host (also in docs/testing.md): keys are not checked unless --function-key
is given (the real host skips them locally too); a message's lease is renewed by the process that
holds it (--lease seconds, 600 by default as on Azure); no dynamic concurrency, no scale controller.

  python -m devtools.funchost [--port 7071] [--workers N] [--function-key KEY] [--settings local.settings.json]
                            [--clock-shifts 0,0.3]
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hmac
import itertools
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.functions import meta
from azure.storage.queue import QueueServiceClient

from devtools.functions_index import FunctionSpec, invoke, load_app, queue_messages
from devtools.loopback import reply, serve_calls, shutdown
from devtools.ncrontab import Schedule
from shared.foundation.settings import StorageSettings
from shared.foundation.storage import queue_service_client

ROOT = Path(__file__).resolve().parent.parent
CLOCK_SHIFT = ROOT / "devtools" / "clockshift"  # its sitecustomize shifts the wall clock of a process that has it on PYTHONPATH
log = logging.getLogger("Host")


@dataclass(frozen=True)
class QueueOptions:
    batch_size: int = 16
    new_batch_threshold: int = 8
    max_dequeue_count: int = 5
    visibility_timeout: float = 0.0
    max_polling_interval: float = 60.0
    encoding: str = "base64"


def _timespan(text: str) -> float:
    parts = [float(p) for p in text.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0.0)
    return parts[-3] * 3600 + parts[-2] * 60 + parts[-1]


@dataclass(frozen=True)
class HostConfig:
    route_prefix: str = "api"
    queues: QueueOptions = QueueOptions()

    @classmethod
    def load(cls, path: Path) -> HostConfig:
        data = json.loads(path.read_text()) if path.exists() else {}
        ext = data.get("extensions", {})
        q = ext.get("queues", {})
        defaults = QueueOptions()
        queues = QueueOptions(
            batch_size=int(q.get("batchSize", defaults.batch_size)),
            new_batch_threshold=int(q.get("newBatchThreshold", defaults.new_batch_threshold)),
            max_dequeue_count=int(q.get("maxDequeueCount", defaults.max_dequeue_count)),
            visibility_timeout=_timespan(q.get("visibilityTimeout", "00:00:00")),
            max_polling_interval=_timespan(q.get("maxPollingInterval", "00:01:00")),
            encoding=str(q.get("messageEncoding", "base64")).lower(),
        )
        return cls(route_prefix=ext.get("http", {}).get("routePrefix", "api"), queues=queues)


def resolve(value: str) -> str:
    """Binding expressions %Setting% read app settings, as on the host."""
    return re.sub(r"%([^%]+)%", lambda m: os.environ.get(m.group(1), ""), value)


# Output bindings give up within seconds (the SDK's default backoff would take a minute): an HTTP
# caller such as Graph gets its 5xx while it still waits, and retries.
OUTPUT_RETRIES = {"retry_total": 2, "initial_backoff": 0.2, "increment_base": 1, "random_jitter_range": 0.2}


def queue_service(connection: str, **options) -> QueueServiceClient:
    """The queue service of a binding's `connection` setting, resolved as the host does."""
    return queue_service_client(StorageSettings.from_env(os.environ, connection), **options)


class OutputWriter:
    """Writes queue output bindings; `enqueued` is told the name of each queue written to."""

    def __init__(self, options: QueueOptions, *, enqueued: Callable[[str], None] | None = None) -> None:
        self._options = options
        self._clients: dict[tuple[str, str], object] = {}
        self._lock = threading.Lock()
        self.enqueued = enqueued or (lambda queue: None)

    def _queue(self, connection: str, name: str):
        with self._lock:
            client = self._clients.get((connection, name))
            if client is None:
                client = queue_service(connection, **OUTPUT_RETRIES).get_queue_client(name)
                try:
                    client.create_queue()
                except ResourceExistsError:
                    pass
                self._clients[(connection, name)] = client
            return client

    def encode(self, text: str) -> str:
        return base64.b64encode(text.encode()).decode() if self._options.encoding == "base64" else text

    def written(self, spec: FunctionSpec, outputs: dict[str, meta.Datum]) -> bool:
        """Writes an invocation's queue outputs; False (logged) when they could not be written, which
        fails the invocation, as on Azure."""
        try:
            self._write(spec, outputs)
        except Exception:
            log.exception("Executed 'Functions.%s' (Failed): its output bindings could not be written", spec.name)
            return False
        return True

    def _write(self, spec: FunctionSpec, outputs: dict[str, meta.Datum]) -> None:
        for binding in spec.outputs:
            datum = outputs.get(binding["name"])
            if datum is None or binding["type"] != "queue":
                continue
            name = resolve(binding["queueName"]).lower()
            queue = self._queue(binding.get("connection") or "AzureWebJobsStorage", name)
            messages = queue_messages(datum)
            for message in messages:
                queue.send_message(self.encode(message))
            if messages:
                self.enqueued(name)


# ---- HTTP ----------------------------------------------------------------------------------------


@dataclass
class Route:
    spec: FunctionSpec
    pattern: re.Pattern
    methods: set[str]
    auth_level: str


def _route_pattern(template: str) -> re.Pattern:
    regex = ""
    for literal, name in re.findall(r"([^{]*)(?:\{([^}]+)\})?", template):
        regex += re.escape(literal)
        if name:
            name = name.rstrip("?").partition(":")[0]
            regex += rf"(?P<{name}>[^/]+)"
    return re.compile(f"^{regex}$", re.IGNORECASE)


class HttpFrontend:
    def __init__(self, specs: list[FunctionSpec], config: HostConfig, outputs: OutputWriter, *, function_key: str | None) -> None:
        self.routes = []
        for spec in specs:
            if spec.trigger["type"] == "httpTrigger":
                template = spec.trigger.get("route") or spec.name
                methods = {
                    m.upper() for m in spec.trigger.get("methods") or ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
                }
                self.routes.append(
                    Route(spec, _route_pattern(template), methods, str(spec.trigger.get("authLevel", "FUNCTION")).upper())
                )
        self.prefix = config.route_prefix.strip("/")
        self.outputs = outputs
        self.function_key = function_key
        self._server = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self, port: int) -> None:
        self._server = serve_calls(self.handle, port)

    def stop(self) -> None:
        shutdown(self._server)

    def _match(self, path: str):
        prefix = f"/{self.prefix}/" if self.prefix else "/"
        if not path.startswith(prefix):
            return None, None
        relative = path[len(prefix) :]
        for route in self.routes:
            m = route.pattern.match(relative)
            if m:
                return route, m.groupdict()
        return None, None

    def _authorized(self, handler, route: Route, query: dict) -> bool:
        if self.function_key is None or route.auth_level == "ANONYMOUS":
            return True
        given = handler.headers.get("x-functions-key") or query.get("code", "")
        return hmac.compare_digest(given.encode(), self.function_key.encode())

    def handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        url = urlsplit(handler.path)
        query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        route, params = self._match(url.path)
        if route is None or handler.command not in route.methods:
            return reply(handler, 404)
        if not self._authorized(handler, route, query):
            return reply(handler, 401)
        host = handler.headers.get("Host") or f"127.0.0.1:{self.port}"
        datum = meta.Datum(
            type="http",
            value={
                "method": meta.Datum(handler.command, "string"),
                "url": meta.Datum(f"http://{host}{handler.path}", "string"),
                "headers": {k.lower(): meta.Datum(v, "string") for k, v in handler.headers.items()},
                "query": {k: meta.Datum(v, "string") for k, v in query.items()},
                "params": {k: meta.Datum(v, "string") for k, v in params.items()},
                "body": meta.Datum(body, "bytes"),
            },
        )
        result = invoke(route.spec, datum, None, "This function was programmatically called via the host APIs.")
        if not result.ok or not self.outputs.written(route.spec, result.outputs):
            return reply(handler, 500)
        response = result.result
        if response is None:
            return reply(handler, 204)
        if response.type == "string":
            return reply(handler, 200, response.value.encode(), {"content-type": "text/plain; charset=utf-8"})
        value = response.value
        headers = {k: v.value for k, v in value["headers"].items()}
        reply(handler, int(value["status_code"].value), value["body"].value or b"", headers)


# ---- queues --------------------------------------------------------------------------------------


@dataclass
class _Held:
    message: object
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: bool = False  # completed, or its lease was lost: no more renewals


class QueueListener:
    """Polls one queue for one queue-triggered function, with the host's rules."""

    def __init__(
        self, spec: FunctionSpec, options: QueueOptions, outputs: OutputWriter, *, lease: float, poll_floor: float = 0.1
    ) -> None:
        self.spec = spec
        self.options = options
        self.outputs = outputs
        self.lease = lease
        self.poll_floor = poll_floor
        self.queue_name = resolve(spec.trigger["queueName"]).lower()
        service = queue_service(spec.trigger.get("connection") or "AzureWebJobsStorage")
        self.queue = service.get_queue_client(self.queue_name)
        self.poison = service.get_queue_client(self.queue_name + "-poison") if not self.queue_name.endswith("-poison") else None
        self._stop = threading.Event()
        self._wake = threading.Event()  # stopping, or a message was written to the queue here
        self._in_flight: dict[str, _Held] = {}
        self._lock = threading.Condition()
        self._pool = ThreadPoolExecutor(options.batch_size + options.new_batch_threshold, thread_name_prefix=spec.name)
        self._threads = [threading.Thread(target=self._poll, daemon=True), threading.Thread(target=self._renew, daemon=True)]

    def start(self) -> None:
        for client in (self.queue, self.poison):
            if client is not None:
                try:
                    client.create_queue()
                except ResourceExistsError:
                    pass
        for thread in self._threads:
            thread.start()

    def notify(self) -> None:
        """A function here wrote to this queue: poll now rather than at the end of the backoff."""
        self._wake.set()

    def stop(self) -> None:
        with self._lock:  # after this, no poller submits to the pool
            self._stop.set()
            self._wake.set()
            self._lock.notify_all()
        for thread in self._threads:
            thread.join(5)
        self._pool.shutdown(wait=True, cancel_futures=False)

    @property
    def busy(self) -> int:
        with self._lock:
            return len(self._in_flight)

    def _poll(self) -> None:
        delay = self.poll_floor
        while not self._stop.is_set():
            with self._lock:
                while len(self._in_flight) > self.options.new_batch_threshold and not self._stop.is_set():
                    self._lock.wait(0.5)
            try:
                messages = list(
                    next(
                        self.queue.receive_messages(
                            messages_per_page=self.options.batch_size, visibility_timeout=int(self.lease)
                        ).by_page(),
                        [],
                    )
                )
            except Exception as exc:  # storage hiccup: back off like the host
                log.warning("Polling %s failed: %s", self.queue_name, exc)
                messages = []
            if not messages:
                self._wake.wait(delay)
                self._wake.clear()
                delay = min(delay * 2, self.options.max_polling_interval)
                continue
            delay = self.poll_floor
            for message in messages:
                with self._lock:
                    if self._stop.is_set():  # shutting down: the message reappears when its lease ends
                        return
                    entry = self._in_flight[message.id] = _Held(message)
                    self._pool.submit(self._process, entry)

    def _renew(self) -> None:
        """Keeps held messages invisible while their invocation runs; never while one is completing
        (a renewal changes the pop receipt that the completion needs)."""
        while not self._stop.wait(max(self.lease / 3, 0.2)):
            with self._lock:
                held = list(self._in_flight.values())
            for entry in held:
                with entry.lock:
                    if entry.done:
                        continue
                    try:
                        updated = self.queue.update_message(
                            entry.message.id, entry.message.pop_receipt, visibility_timeout=int(self.lease)
                        )
                        entry.message.pop_receipt = updated.pop_receipt
                    except ResourceNotFoundError:  # the receipt is stale: the lease is lost for good
                        entry.done = True  # stop renewing; another worker may take the message
                        log.warning("Lost the lease of message %s on %s", entry.message.id, self.queue_name)
                    except Exception as exc:  # transient: the next round tries again
                        log.warning("Renewing message %s on %s failed: %s", entry.message.id, self.queue_name, exc)

    def _decode(self, content: str) -> str:
        if self.options.encoding != "base64":
            return content
        try:
            return base64.b64decode(content, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise ValueError(f"Message is not valid base64: {exc}") from None

    def _process(self, entry: _Held) -> None:
        message = entry.message
        try:
            if message.dequeue_count > self.options.max_dequeue_count:
                with entry.lock:
                    entry.done = True
                    return self._to_poison(message)
            try:
                body = self._decode(message.content)
            except ValueError as exc:
                log.error("Executed 'Functions.%s' (Failed): %s", self.spec.name, exc)
                ok = False
            else:
                metadata = {
                    "Id": meta.Datum(message.id, "string"),
                    "DequeueCount": meta.Datum(message.dequeue_count, "int"),
                    "PopReceipt": meta.Datum(message.pop_receipt, "string"),
                    "InsertionTime": meta.Datum(_iso(message.inserted_on), "string"),
                    "ExpirationTime": meta.Datum(_iso(message.expires_on), "string"),
                    "NextVisibleTime": meta.Datum(_iso(message.next_visible_on), "string"),
                }
                result = invoke(
                    self.spec, meta.Datum(body, "string"), metadata, f"New queue message detected on '{self.queue_name}'."
                )
                ok = result.ok and self.outputs.written(self.spec, result.outputs)
            with entry.lock:  # the completion needs the latest pop receipt: no renewal meanwhile
                entry.done = True
                if ok:
                    self.queue.delete_message(message.id, message.pop_receipt)
                elif message.dequeue_count >= self.options.max_dequeue_count:
                    self._to_poison(message)
                else:
                    self.queue.update_message(
                        message.id, message.pop_receipt, visibility_timeout=int(self.options.visibility_timeout)
                    )
        except ResourceNotFoundError:
            log.warning("Message %s on %s was no longer held (lease lost)", message.id, self.queue_name)
        except Exception:
            log.exception("Host error while processing message %s on %s", message.id, self.queue_name)
        finally:
            with self._lock:
                self._in_flight.pop(message.id, None)
                self._lock.notify_all()

    def _to_poison(self, message) -> None:
        if self.poison is None:
            log.error(
                "Message %s on %s failed %d times; no poison queue for a poison queue: left invisible",
                message.id,
                self.queue_name,
                message.dequeue_count,
            )
            return
        log.warning(
            "Message has reached MaxDequeueCount of %d. Moving message to queue '%s-poison'.",
            self.options.max_dequeue_count,
            self.queue_name,
        )
        self.poison.send_message(message.content)
        self.queue.delete_message(message.id, message.pop_receipt)


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00") if moment else None


# ---- timers --------------------------------------------------------------------------------------


class TimerListener:
    def __init__(self, spec: FunctionSpec, outputs: OutputWriter) -> None:
        self.spec = spec
        self.outputs = outputs
        self.schedule = Schedule(resolve(spec.trigger["schedule"]))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.last: datetime | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def fire(self, past_due: bool = False) -> bool:
        now = datetime.now(UTC)
        status = {"Last": _iso(self.last), "Next": _iso(self.schedule.next_after(now)), "LastUpdated": _iso(now)}
        datum = meta.Datum(
            json.dumps({"Schedule": {"AdjustForDST": True}, "ScheduleStatus": status, "IsPastDue": past_due}), "json"
        )
        self.last = now
        result = invoke(self.spec, datum, None, "Timer fired at " + now.isoformat())
        return result.ok and self.outputs.written(self.spec, result.outputs)

    def _run(self) -> None:
        if self.spec.trigger.get("runOnStartup"):
            self.fire()
        while not self._stop.is_set():
            now = datetime.now(UTC)
            due = self.schedule.next_after(now)
            if self._stop.wait((due - now).total_seconds()):
                return
            self.fire()


# ---- the host ------------------------------------------------------------------------------------


class LocalHost:
    def __init__(
        self,
        app_path: str | Path = ROOT / "function_app.py",
        *,
        http_port: int | None = 7071,
        queue_workers: int | None = 0,
        run_timers: bool = True,
        function_key: str | None = None,
        lease: float = 600.0,
        queue_overrides: dict | None = None,
        worker_log: str | None = None,
        clock_shifts: Sequence[float] = (),
    ) -> None:
        """`queue_overrides` replaces host.json queue settings (QueueOptions fields), e.g. for fast tests.
        `clock_shifts`: seconds by which each worker process's wall clock runs off (worker i takes
        clock_shifts[i]; the ones past its end run on the machine's clock)."""
        self.app_path = Path(app_path)
        self.config = HostConfig.load(self.app_path.parent / "host.json")
        self.queue_overrides = dict(queue_overrides or {})
        if self.queue_overrides:
            self.config = replace(self.config, queues=replace(self.config.queues, **self.queue_overrides))
        self.app, self.specs = load_app(self.app_path)
        self.outputs = OutputWriter(self.config.queues, enqueued=self.enqueued)
        self.http_port = http_port
        self.queue_workers = queue_workers
        self.run_timers = run_timers
        self.function_key = function_key
        self.lease = lease
        self.worker_log = worker_log
        self.clock_shifts = tuple(clock_shifts)
        self.http: HttpFrontend | None = None
        self.listeners: list[QueueListener] = []
        self.timers: list[TimerListener] = []
        self.workers: list[subprocess.Popen] = []
        self._turn = itertools.count()

    def enqueued(self, queue: str) -> None:
        """A function here wrote to `queue`: its listener polls now (in this process, or in the worker
        process whose turn it is, standing for the instance that ran the function)."""
        for listener in self.listeners:
            if listener.queue_name == queue:
                listener.notify()
        alive = [w for w in self.workers if w.poll() is None and w.stdin is not None]
        if not self.listeners and alive:
            worker = alive[next(self._turn) % len(alive)]
            try:
                worker.stdin.write(queue + "\n")
                worker.stdin.flush()
            except (BrokenPipeError, ValueError):  # it died meanwhile: the queue is polled anyway
                pass

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http.port}" if self.http else ""

    def fire(self, function_name: str) -> bool:
        """Runs a timer-triggered function now, as the portal's "Test/Run" does; True if it succeeded."""
        timer = next((t for t in self.timers if t.spec.name == function_name), None)
        if timer is None:
            spec = next(s for s in self.functions("timerTrigger") if s.name == function_name)
            timer = TimerListener(spec, self.outputs)
        return timer.fire()

    def functions(self, trigger_type: str) -> list[FunctionSpec]:
        return [s for s in self.specs if s.trigger["type"] == trigger_type]

    def start(self) -> LocalHost:
        if self.http_port is not None:
            self.http = HttpFrontend(self.specs, self.config, self.outputs, function_key=self.function_key)
            self.http.start(self.http_port)
        if self.run_timers:
            self.timers = [TimerListener(s, self.outputs) for s in self.functions("timerTrigger")]
            for timer in self.timers:
                timer.start()
        if self.queue_workers == 0:
            self.start_queue_listeners()
        elif self.queue_workers is not None:  # None: HTTP and timers only
            self.workers = [self.spawn_worker(wait=False, clock_shift=self._clock_shift(i)) for i in range(self.queue_workers)]
            for worker in self.workers:
                self._wait_ready(worker)
        log.info("Host started: %d functions (%s)", len(self.specs), ", ".join(s.name for s in self.specs))
        return self

    def start_queue_listeners(self) -> None:
        self.listeners = [
            QueueListener(
                s,
                self.config.queues,
                self.outputs,
                lease=self.lease,
                poll_floor=min(0.1, self.config.queues.max_polling_interval),
            )
            for s in self.functions("queueTrigger")
        ]
        for listener in self.listeners:
            listener.start()

    def _clock_shift(self, worker: int) -> float:
        return self.clock_shifts[worker] if worker < len(self.clock_shifts) else 0.0

    def spawn_worker(self, *, wait: bool = True, clock_shift: float = 0.0) -> subprocess.Popen:
        """A worker process for the queue triggers; with `wait`, once it listens (its app is loaded);
        with `clock_shift`, one whose wall clock runs that many seconds off."""
        args = [
            sys.executable,
            "-m",
            "devtools.funchost",
            "--app",
            str(self.app_path),
            "--queues-only",
            "--lease",
            str(self.lease),
            "--queue-overrides",
            json.dumps(self.queue_overrides),
        ]
        if self.worker_log:
            args += ["--log-file", self.worker_log]
        worker = subprocess.Popen(  # noqa: S603 - our own interpreter and module, fixed options
            args, cwd=ROOT, env=worker_env(clock_shift), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        if wait:
            self._wait_ready(worker)
        return worker

    @staticmethod
    def _wait_ready(worker: subprocess.Popen) -> None:
        line = worker.stdout.readline()  # the worker says "listening" once its listeners run
        if line.strip() != "listening":
            raise RuntimeError(f"worker process {worker.pid} did not start (exit code {worker.poll()})")
        worker.stdout.close()

    def stop(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
            try:
                worker.stdin.close()
            except (BrokenPipeError, OSError):
                pass
        for worker in self.workers:
            try:
                worker.wait(15)
            except subprocess.TimeoutExpired:
                worker.kill()
        for part in [*self.timers, *self.listeners]:
            part.stop()
        if self.http:
            self.http.stop()

    def __enter__(self) -> LocalHost:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def worker_env(clock_shift: float = 0.0) -> dict[str, str]:
    """The environment of a worker process: this one's, and with `clock_shift`, the sitecustomize that
    makes the worker's `time.time()` run that many seconds off (the app reads its wall clock there)."""
    env = os.environ.copy()
    if clock_shift:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(CLOCK_SHIFT), env.get("PYTHONPATH")) if p)
        env["CLOCK_SHIFT_SECONDS"] = repr(clock_shift)
    return env


def _relay_notifications(host: LocalHost) -> None:
    """In a worker process: the parent names, one per line, the queues its functions wrote to."""
    for line in sys.stdin:
        host.enqueued(line.strip())


def load_settings_file(path: Path) -> None:
    """local.settings.json `Values` become environment variables, as `func start` does."""
    values = json.loads(path.read_text()).get("Values", {})
    for key, value in values.items():
        os.environ.setdefault(key, str(value))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.funchost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--app", default=str(ROOT / "function_app.py"))
    parser.add_argument("--port", type=int, default=7071)
    parser.add_argument("--workers", type=int, default=1, help="queue worker processes (0: in this process)")
    parser.add_argument("--function-key", default=os.environ.get("FUNCTION_KEY"))
    parser.add_argument("--settings", help="a local.settings.json whose Values become the environment")
    parser.add_argument("--lease", type=float, default=600.0, help="seconds a received message stays invisible")
    parser.add_argument(
        "--queue-overrides", type=json.loads, default={}, help="JSON object of host.json queue settings to replace"
    )
    parser.add_argument("--log-file", help="append logs to this file instead of the console")
    parser.add_argument(
        "--clock-shifts",
        type=lambda text: [float(x) for x in text.split(",") if x],
        default=[],
        help="comma-separated seconds by which each worker process's wall clock runs off, e.g. 0,0.3",
    )
    parser.add_argument("--queues-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    # the process id tells the workers apart in a log file they share
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(message)s", datefmt=None, filename=args.log_file
    )
    logging.getLogger("azure").setLevel(logging.WARNING)
    if args.settings:
        load_settings_file(Path(args.settings))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if args.queues_only:
        host = LocalHost(args.app, http_port=None, run_timers=False, lease=args.lease, queue_overrides=args.queue_overrides)
        host.start_queue_listeners()
        threading.Thread(target=_relay_notifications, args=(host,), daemon=True).start()
        print("listening", flush=True)
    else:
        host = LocalHost(
            args.app,
            http_port=args.port,
            queue_workers=args.workers,
            function_key=args.function_key,
            lease=args.lease,
            queue_overrides=args.queue_overrides,
            clock_shifts=args.clock_shifts,
        )
        host.start()
        for spec in host.functions("httpTrigger"):
            route = spec.trigger.get("route") or spec.name
            methods = ",".join(spec.trigger.get("methods") or ["*"])
            print(f"  {spec.name}: [{methods}] {host.base_url}/{host.config.route_prefix}/{route}", flush=True)
    stop.wait()
    host.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
