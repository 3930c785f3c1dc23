"""The composition root: builds the process's `Services` from the app settings, once, and only wires."""

from __future__ import annotations

import os
import threading

from shared.domain.plan import Plan, PlanError, parse_rollout
from shared.fanout.dispatcher import Dispatcher
from shared.foundation.runtime import freeze_loaded_objects
from shared.foundation.settings import ConfigError, Settings, StorageSettings
from shared.foundation.storage import PACING_TABLE, REGISTRY_TABLE, RUNS_TABLE, WATCH_TABLE, Storage
from shared.foundation.tokens import TokenValidator
from shared.graph.client import GraphClient, managed_identity_tokens
from shared.pacing.pacer import Pacer
from shared.pacing.schedule import TableSchedule
from shared.services import Services
from shared.steering.commands import STEERING_STALE_OK
from shared.stores.apps import AppStore
from shared.stores.counters import Counters
from shared.stores.registry import Registry
from shared.stores.run_cache import RunCache
from shared.stores.runs import RunStore
from shared.stores.targets import TargetStore


def default_plan(settings: Settings) -> Plan | None:
    """ROLLOUT, checked: a malformed plan is a configuration error naming the field."""
    if settings.rollout is None:
        return None
    try:
        return parse_rollout(settings.rollout, "ROLLOUT")
    except PlanError as exc:
        raise ConfigError(str(exc)) from None


def build(settings: Settings) -> Services:
    plan = default_plan(settings)
    storage = Storage(settings.storage)
    # the pacing schedule's times are on storage's clock, which every instance shares, and so are the
    # times that wait for a slot (a chat's POST one second after its GET's response, a release plan)
    clock = storage.clock
    pacer = Pacer(
        schedule=TableSchedule(storage.table(PACING_TABLE)),
        rate=settings.graph_max_rps,
        clock=clock.now,
        clock_offset=clock.offset,
    )
    graph = GraphClient(
        base_url=settings.graph_base_url,
        tokens=managed_identity_tokens(settings.azure_client_id),
        pacer=pacer,
        inline_retry_seconds=settings.inline_retry_seconds,
        clock=clock.now,
    )
    runs_table = storage.table(RUNS_TABLE)
    counters = Counters(runs_table)
    runs = RunStore(runs_table, counters, readers=storage.readers)
    services = Services(
        settings=settings,
        storage=storage,
        runs=runs,
        run_cache=RunCache(runs, stale_ok=STEERING_STALE_OK),
        targets=TargetStore(runs_table, counters),
        pacer=pacer,
        graph=graph,
        dispatcher=Dispatcher(storage=storage, pacer=pacer, targets_per_message=settings.targets_per_message, clock=clock.now),
        apps=AppStore(storage.table(WATCH_TABLE)),
        registry=Registry(storage.table(REGISTRY_TABLE), readers=storage.readers),
        token_validator=TokenValidator(settings.api_auth) if settings.api_auth.mode == "entra" else None,
        default_plan=plan,
    )
    storage.time_clock()
    return services


_lock = threading.Lock()
_current: Services | None = None  # the process's services: the one piece of module state
_storage_alone: Storage | None = None  # the account alone, while a malformed setting keeps the services from being built


def get() -> Services:
    global _current
    with _lock:
        if _current is None:
            _current = build(Settings.from_env())
            freeze_loaded_objects()  # the services and the libraries live as long as the process
        return _current


def storage_alone() -> Storage:
    """The storage account from its own setting, for what must work while another setting is
    malformed (queue messages put back until it is fixed); ConfigError when storage's is."""
    global _storage_alone
    with _lock:
        if _storage_alone is None:
            _storage_alone = Storage(StorageSettings.from_env(os.environ))
        return _storage_alone


def reset() -> None:
    """Forget the process's services (settings changed; used by tests and the local host)."""
    global _current, _storage_alone
    with _lock:
        _current = _storage_alone = None
