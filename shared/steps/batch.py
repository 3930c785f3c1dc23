"""One targets-queue message: its batch, what a seeding run learns from it, and what its outcome
means for the run (a canary decided, a missing permission)."""

from __future__ import annotations

from shared.domain.messages import UpgradeTargets
from shared.domain.targets import Outcome
from shared.foundation.errors import MalformedMessage, MissingPermissions
from shared.steps.control import evaluate_canary, fail_for_permissions
from shared.steps.upgrade import batch_upgrader


def upgrade_batch(services, message: UpgradeTargets, message_id: str, dequeue_count: int) -> list[Outcome]:
    run = services.started_run(message.run_id)
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
    if message.canary:
        evaluate_canary(services, run)
    return recorded
