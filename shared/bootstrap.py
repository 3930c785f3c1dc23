"""The composition root: the objects a function invocation needs, built once per process from the
app settings, and handed to the steps as `services`."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from shared.domain.runs import Control, RunRecord
from shared.foundation.runtime import freeze_loaded_objects
from shared.foundation.settings import Settings
from shared.foundation.storage import PACING_TABLE, REGISTRY_TABLE, RUNS_TABLE, WATCH_TABLE, Storage
from shared.graph.client import GraphClient, managed_identity_tokens
from shared.pacing.pacer import PREPARE_SECONDS, WAKE_TOLERANCE, Pacer
from shared.pacing.schedule import TableSchedule
from shared.steps.fanout import Dispatcher
from shared.steps.operator import CANCEL_SEEN
from shared.stores.counters import Counters
from shared.stores.registry import Registry
from shared.stores.runs import RunStore
from shared.stores.targets import TargetStore
from shared.stores.tracking import Tracking

log = logging.getLogger(f"upgrader.{__name__}")
CONTROL_TTL = 0.2  # seconds a process trusts what it read of a run's control state; then it re-reads it
# ... in the background, trusting it meanwhile this long: a request leaves at most PREPARE_SECONDS +
# WAKE_TOLERANCE after its check, and all of that must be over before a cancel is answered (CANCEL_SEEN)
CONTROL_STALE_OK = round(CANCEL_SEEN - PREPARE_SECONDS - WAKE_TOLERANCE - 0.01, 3)


@dataclass(kw_only=True)
class Services:
    settings: Settings
    storage: Storage
    runs: RunStore
    targets: TargetStore
    pacer: Pacer
    graph: GraphClient
    dispatcher: Dispatcher
    tracking: Tracking
    registry: Registry
    _run_cache: OrderedDict = field(default_factory=OrderedDict)
    _controls: dict = field(default_factory=dict)  # run id -> (read at, Control)
    _cache_lock: threading.Lock = field(default_factory=threading.Lock)
    _refresh_lock: threading.Lock = field(default_factory=threading.Lock)
    clock: Callable[[], float] = time.monotonic

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        storage = Storage(settings.storage)
        pacer = Pacer(schedule=TableSchedule(storage.table(PACING_TABLE)), rate=settings.graph_max_rps)
        graph = GraphClient(
            base_url=settings.graph_base_url,
            tokens=managed_identity_tokens(settings.azure_client_id),
            pacer=pacer,
            inline_retry_seconds=settings.inline_retry_seconds,
        )
        runs_table = storage.table(RUNS_TABLE)
        counters = Counters(runs_table)
        return cls(
            settings=settings,
            storage=storage,
            runs=RunStore(runs_table, counters),
            targets=TargetStore(runs_table, counters),
            pacer=pacer,
            graph=graph,
            dispatcher=Dispatcher(storage=storage, pacer=pacer, targets_per_message=settings.targets_per_message),
            tracking=Tracking(storage.table(WATCH_TABLE)),
            registry=Registry(storage.table(REGISTRY_TABLE)),
        )

    def started_run(self, run_id: str) -> RunRecord | None:
        """A run whose target is resolved; cached, since that part never changes afterwards."""
        with self._cache_lock:
            run = self._run_cache.get(run_id)
        if run is None:
            run = self.runs.get_run(run_id)
            if run is None or run.target is None:
                return run
            with self._cache_lock:
                self._run_cache[run_id] = run
                while len(self._run_cache) > 256:
                    self._run_cache.popitem(last=False)
        return run

    def control(self, run_id: str) -> Control:
        """How the run is steered now (cancelled, paused, canary phase), as read at most
        CONTROL_STALE_OK seconds ago by this process: a cancel is answered only after that long, so
        no upgrade leaves after the answer.

        A read older than CONTROL_TTL is renewed in the background, one read per process at a
        time, while callers go on with it: they are often just before their pacing slot, and a
        storage read there would make their request leave late, crowding the next second. Only a
        read older than CONTROL_STALE_OK (the process was idle) is waited for."""
        with self._cache_lock:
            cached = self._controls.get(run_id)
        age = self.clock() - cached[0] if cached is not None else None
        if age is not None and age < CONTROL_TTL:
            return cached[1]
        if age is not None and age < CONTROL_STALE_OK:
            if self._refresh_lock.acquire(blocking=False):
                threading.Thread(target=self._refresh_control, args=(run_id, True), name="control-refresh", daemon=True).start()
            return cached[1]
        self._refresh_lock.acquire()
        return self._refresh_control(run_id)

    def _refresh_control(self, run_id: str, background: bool = False) -> Control | None:
        """Reads the run's control row into the cache (the caller holds `_refresh_lock`)."""
        try:
            with self._cache_lock:
                cached = self._controls.get(run_id)
            now = self.clock()  # before the read: the value is at least this fresh
            if cached is not None and now - cached[0] < CONTROL_TTL:
                return cached[1]  # read by the thread that held the lock before us
            control = self.runs.control(run_id) or Control()
            with self._cache_lock:
                self._controls[run_id] = (now, control)
                while len(self._controls) > 256:
                    del self._controls[next(iter(self._controls))]
            return control
        except Exception:
            if not background:
                raise
            log.warning("Reading the control row of run %s failed; the next caller reads it again", run_id, exc_info=True)
            return None
        finally:
            self._refresh_lock.release()


_lock = threading.Lock()
_current: Services | None = None


def get() -> Services:
    global _current
    with _lock:
        if _current is None:
            _current = Services.from_settings(Settings.from_env())
            freeze_loaded_objects()  # the services and the libraries live as long as the process
        return _current


def reset() -> None:
    """Forget the process's services (settings changed; used by tests and the local host)."""
    global _current
    with _lock:
        _current = None
