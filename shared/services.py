"""The objects a process shares, typed: built once per process by `shared.bootstrap` and passed to
every handler, step and route explicitly."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from shared.domain.plan import Plan
from shared.fanout.dispatcher import Dispatcher
from shared.foundation.runtime import Average
from shared.foundation.settings import Settings
from shared.foundation.storage import Storage
from shared.foundation.tokens import TokenValidator
from shared.graph.client import GraphClient
from shared.pacing.pacer import Pacer
from shared.stores.apps import AppStore
from shared.stores.registry import Registry
from shared.stores.run_cache import RunCache
from shared.stores.runs import RunStore
from shared.stores.targets import TargetStore

# Batches GETting at once in a process. All the GETs of all batches in flight share the pacing
# rate; if every batch took its share, every batch would last as long as the slowest, and the host
# would take no new message while they all wait (it fetches more only below newBatchThreshold). A
# few batches at a time finish their GETs quickly, in the order they came, and leave room.
GET_PHASES = 4


@dataclass(kw_only=True)
class Services:
    settings: Settings
    storage: Storage
    runs: RunStore  # fresh reads and conditional writes of runs
    run_cache: RunCache  # the runs this process works on, and their steering as read a moment ago
    targets: TargetStore
    pacer: Pacer
    graph: GraphClient
    dispatcher: Dispatcher
    apps: AppStore  # what the app remembers per Teams app
    registry: Registry
    token_validator: TokenValidator | None = None  # API_AUTH=entra
    default_plan: Plan | None = None  # ROLLOUT: the plan of runs that ask for none
    claim_time: Average = field(default_factory=lambda: Average(0.2, cap=0.8))  # a claim's duration here: claims start that early
    get_phases: threading.BoundedSemaphore = field(default_factory=lambda: threading.BoundedSemaphore(GET_PHASES))
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
