"""One targets-queue message: its batch, what a seeding run learns from it, and what its outcomes
mean for the run (a step of its plan done, a missing permission)."""

from __future__ import annotations

from shared.batches.upgrader import BatchUpgrader
from shared.domain.messages import UpgradeTargets
from shared.domain.targets import Outcome
from shared.foundation.errors import MalformedMessage, MissingPermissions
from shared.services import Services
from shared.steering.gate import gate_now, give_back
from shared.steering.progress import advance_run
from shared.steering.stopping import fail_for_permissions


def batch_upgrader(services: Services) -> BatchUpgrader:
    return BatchUpgrader(
        graph=services.graph,
        targets=services.targets,
        max_attempts=services.settings.max_attempts,
        requeue=services.dispatcher.requeue,
        gate=lambda run: gate_now(services, run),
        give_back=lambda run, rows: give_back(services, run, rows),
        claim_time=services.claim_time,
        get_phases=services.get_phases,
    )


def upgrade_batch(services: Services, message: UpgradeTargets, message_id: str, dequeue_count: int) -> list[Outcome]:
    run = services.run_cache.started_run(message.run_id)
    if run is None:
        raise MalformedMessage(f"run {message.run_id} does not exist")
    try:
        recorded = batch_upgrader(services).process(run, message, message_id, dequeue_count)
    except MissingPermissions as missing:
        fail_for_permissions(services, run.run_id, missing.message)
        return []
    if message.scope in run.seeding and message.scope != "chat":  # chats are seeded as they are listed
        # anything but notInstalled may hold the app (a failed check too): the registry errs on that side
        found = [o.target for o in recorded if o.outcome not in ("notInstalled", "cancelled")]
        if found:
            services.registry.add(run.target.teams_app_id, found, source="scan")
    if message.admitted:  # these may have been the last of the plan's current step
        advance_run(services, run.run_id)
    return recorded
