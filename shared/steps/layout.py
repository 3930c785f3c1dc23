"""Laying out a run's known targets (the ids given, or the registry's): their rows are written
batch by batch, in the order the batches are due at a release plan reserved once for all of them,
each batch is queued as soon as its rows exist, and the first batches are processed right here,
starting with their GETs while their rows are still being written: the first requests wait
neither for the layout nor for a queue poll."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from shared.batches.handler import batch_upgrader
from shared.domain.messages import LoadTargets, Step
from shared.domain.runs import RunRecord
from shared.domain.steering import Steering, admission_limit
from shared.domain.targets import Target
from shared.fanout.dispatcher import Planned
from shared.foundation.errors import MissingPermissions
from shared.services import Services
from shared.steering.gate import found, hold
from shared.steering.stopping import fail_for_permissions
from shared.steps.redelivery import Delivery, StepOutput
from shared.stores.target_rows import TargetRow

WRITERS = 2  # transactions written at once: bulk writes must leave storage time for the claims of the first batches


def lay_out_planned(services: Services, run: RunRecord, step: Step, targets: list[Target], *, inline: int, chain: str) -> None:
    """The targets given to a run, in order: those the first step of its plan admits are laid out
    (and begun) first, the others recorded and held (see steering.gate); without a plan, all of them."""
    steering = services.runs.steering(run.run_id) or Steering()
    limit = admission_limit(steering, run.plan, targets=len(targets), discovering=False)
    order = {t: i for i, t in enumerate(targets)}
    if limit is None:
        lay_out(services, run, step, targets, inline=inline, chain=chain, order=order)
        return
    lay_out(services, run, step, targets[:limit], inline=inline, chain=chain, admitted=True, order=order)
    new = services.targets.add(run.run_id, targets[limit:], step.step_id, order=order)
    # counted once the admitted rows exist (a redelivery takes none twice): now the step may end
    services.runs.take_admissions(run.run_id, min(limit, len(targets)), limit)
    hold(services, run, [TargetRow(t, "pending", etag) for t, etag in new.items()])


def load(services: Services, run: RunRecord, step: LoadTargets, delivery: Delivery) -> StepOutput:
    """A chunk of stored targets (the registry's, in its fixed mixed order): admitted to the plan's
    step as it has room, in chunk order, like targets a scan finds; without a plan, laid out at once."""
    targets = services.runs.load_input(step.run_id, step.input_key)
    if run.plan is not None:
        found(services, run, step.step_id, targets)
    else:
        lay_out(services, run, step, targets)
    return StepOutput()


def lay_out(
    services: Services,
    run: RunRecord,
    step: Step,
    targets: list[Target],
    *,
    inline: int = 0,
    chain: str = "",
    admitted: bool = False,
    order: dict[Target, int] | None = None,
) -> None:
    """Records and queues `targets` as `step`'s; the first `inline` batches (in release order) are
    processed in this invocation, under `chain`, instead of being queued (and retried here, not
    queued again, so that no message but this step's owns `chain`). `admitted`: they are admitted
    to the first step of the run's plan."""
    plan = services.dispatcher.plan(run.run_id, targets, admitted=admitted)
    inline = min(inline, len(plan))
    remaining = {i: set(p.targets) for i, p in enumerate(plan)}  # batch -> targets whose rows are not written yet
    etags: dict[Target, str] = {}
    lock = threading.Lock()
    rows_ready = [threading.Event() for _ in range(inline)]
    writes_done = threading.Event()

    def complete(batch: Planned) -> Planned:
        return replace(batch, message=replace(batch.message, etags=tuple(etags[t] for t in batch.targets)))

    def written(new: dict[Target, str]) -> None:
        ready = []
        with lock:
            etags.update(new)
            for i in [i for i, left in remaining.items() if not left.isdisjoint(new)]:
                remaining[i].difference_update(new)
                if not remaining[i]:
                    del remaining[i]
                    ready.append(i)
        for i in ready:
            if i < inline:
                rows_ready[i].set()
        services.dispatcher.send(complete(plan[i]) for i in ready if i >= inline)

    def rows_of(i: int) -> dict[Target, str]:
        """The batch's rows this step wrote, once written (those that existed already are not ours)."""
        while not rows_ready[i].wait(timeout=0.05):
            if writes_done.is_set():
                break
        with lock:
            return {t: etags[t] for t in plan[i].targets if t in etags}

    failures: list[BaseException] = []

    def process(i: int) -> None:
        upgrader = batch_upgrader(services)
        try:
            message = replace(plan[i].message, claim=chain)
            upgrader.process(run, message, chain, requeue=False, written=lambda: rows_of(i))
        except MissingPermissions as missing:  # the run fails; the layout goes on (the sweep ends its targets)
            fail_for_permissions(services, run.run_id, missing.message)
        except Exception as exc:  # the step fails, and its redelivery queues what is still pending
            failures.append(exc)

    processors = [threading.Thread(target=process, args=(i,), name=f"inline-{i}", daemon=True) for i in range(inline)]
    for thread in processors:
        thread.start()
    try:
        # a transaction per batch, in the order they are due: each batch is queued as soon as it
        # can be, and the first ones are not held up by bulk writes (which cost storage more time
        # per row, but hold back every batch of their partition)
        with ThreadPoolExecutor(WRITERS, thread_name_prefix="layout") as pool:
            writes = [
                pool.submit(
                    services.targets.add, run.run_id, list(p.targets), step.step_id, each=written, admitted=admitted, order=order
                )
                for p in plan
            ]
            for future in writes:
                future.result()
    finally:
        writes_done.set()
        for thread in processors:
            thread.join()
    if failures:
        raise failures[0]
    # rows that existed already (a redelivered step) were not reported as written: queue their batches as planned
    services.dispatcher.send(plan[i] for i in remaining if i >= inline)
