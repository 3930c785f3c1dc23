"""Targets held back while a run is paused or in its canary, and queued when it goes on.

A held target is pending with no queue message. Whoever holds targets back (a step that found
them during a canary, a batch of a paused run giving its claims back) writes them first and then
reads the run's control state afresh; the release (resume, canary passed) changes the state first
and then reads the pending targets. So every held target is queued by one or the other, or by
both, which is harmless: a batch skips a target another batch holds or has decided.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.domain.messages import ReleaseTargets
from shared.domain.runs import Control, RunRecord
from shared.domain.targets import Target
from shared.stores.targets import TargetRow

GATE = "canary-gate"  # the run row counting the canary's slots taken by steps that found targets


def going_on(control: Control | None) -> bool:
    """Whether targets of the run may be queued for upgrade now."""
    return control is not None and not control.stopped and not control.holding and control.phase != "canary"


def queue_if_going(services, run_id: str, targets: Iterable[Target]) -> None:
    """Queues held targets after all if the run went on meanwhile (read afresh, not cached)."""
    targets = list(targets)
    if targets and going_on(services.runs.control(run_id)):
        services.dispatcher.send_targets(run_id, targets)


def give_back(services, run_id: str, rows: list[TargetRow]) -> None:
    """A batch of a paused run gives its claimed targets back: pending, queued on release."""
    if rows:
        services.targets.release(run_id, rows)
        queue_if_going(services, run_id, [r.target for r in rows])


def release(services, message: ReleaseTargets) -> None:
    """Queues every pending target of a run that goes on (resumed, or past its canary)."""
    if not going_on(services.runs.control(message.run_id)):
        return
    rows = services.targets.rows_in(message.run_id)
    services.dispatcher.send_targets(message.run_id, {r.target: r.etag for r in rows})


# ---- the canary's targets --------------------------------------------------------------------------


def canary_candidates(services, run: RunRecord, count: int) -> int:
    """How many of `count` targets just found may join the canary (the first `canary.targets`
    found join it): their slots are taken here; the caller gives back those of duplicates."""
    if run.canary is None or services.control(run.run_id).phase != "canary":
        return 0
    return services.runs.take_slots(run.run_id, GATE, count, run.canary.targets)


def give_back_slots(services, run: RunRecord, count: int) -> None:
    if count and run.canary is not None:
        services.runs.take_slots(run.run_id, GATE, -count, run.canary.targets)
