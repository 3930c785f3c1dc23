"""The gate: what may happen to a run's targets now. Batches ask it before every target (from
this process's read of the run's steering, a fraction of a second old); steps ask it for the
targets they find, which go now (queued), wait for room in the plan's current step, or are held.

A held target is pending with no queue message. Whoever holds targets writes them first and then
reads the run's steering afresh; whatever lets them go (a resume, a bake's end, a step with room)
changes the steering first and then reads the pending targets. So every held target is queued by
one or the other, or by both, which is harmless: a batch skips a target another batch holds or
has decided."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime

from shared.domain.messages import AdvanceRun
from shared.domain.runs import RunRecord
from shared.domain.steering import STOP, Gate, Steering, admission_limit, gate, iso
from shared.domain.targets import Target
from shared.foundation.telemetry import event
from shared.services import Services
from shared.stores.target_rows import TargetRow


def gate_now(services: Services, run: RunRecord) -> Gate:
    """From this process's cached read of the run's steering: for the hot path."""
    return gate(services.run_cache.cached_steering(run.run_id), run.plan, services.now())


def fresh_gate(services: Services, run: RunRecord) -> tuple[Gate, Steering]:
    """From a fresh read: for decisions that must not be stale (holding, releasing)."""
    steering = services.runs.steering(run.run_id) or Steering()
    return gate(steering, run.plan, services.now()), steering


def found(services: Services, run: RunRecord, source: str, targets: Iterable[Target]) -> dict[Target, str]:
    """Records targets a step found (each once per run) and queues those that may go now, so
    upgrades start while discovery goes on; returns the new ones with their rows' ETags. While the
    plan's current step has room, the first found are admitted to it; the others are held."""
    added: dict[Target, str] = {}
    rest = list(dict.fromkeys(targets))
    now = gate_now(services, run)
    while rest and now.go and now.admitted_only:
        steering = services.run_cache.cached_steering(run.run_id)
        limit = admission_limit(steering, run.plan, targets=0, discovering=True)
        room = services.runs.take_admissions(run.run_id, len(rest), limit) if limit else 0
        if room == 0:
            break
        chosen, rest = rest[:room], rest[room:]
        new = services.targets.add(run.run_id, chosen, source=source, admitted=True)
        if len(new) < room:  # duplicates, found before: their admissions go back
            services.runs.take_admissions(run.run_id, len(new) - room, limit)
        services.dispatcher.send_targets(run.run_id, new, admitted=True)
        added.update(new)
    if rest:
        new = services.targets.add(run.run_id, rest, source=source)
        if now.go and not now.admitted_only:
            services.dispatcher.send_targets(run.run_id, new)
        else:
            hold(services, run, [TargetRow(t, "pending", etag) for t, etag in new.items()])
        added.update(new)
    return added


def hold(services: Services, run: RunRecord, rows: list[TargetRow]) -> None:
    """Holds pending targets (written already): queued after all if the run went on meanwhile
    (read afresh), admitted if the plan's step has room for them now, and otherwise left for
    whatever lets them go; a hold that ends by itself gets a look at its end."""
    if not rows:
        return
    now, steering = fresh_gate(services, run)
    if now.verdict == STOP:
        return  # the sweep ends them
    if not now.go:
        if now.resumes_at is not None:
            wake_at(services, run.run_id, now.resumes_at, steering, reason=now.reason)
        return
    if not now.admitted_only:
        services.dispatcher.send_targets(run.run_id, {r.target: r.etag for r in rows})
        return
    services.dispatcher.send_targets(run.run_id, {r.target: r.etag for r in rows if r.admitted}, admitted=True)
    held = [r for r in rows if not r.admitted]  # found by a discovery step: discovery is going on
    if held:
        admitted = admit(services, run, held, admission_limit(steering, run.plan, targets=0, discovering=True) or 0)
        services.dispatcher.send_targets(run.run_id, {r.target: r.etag for r in admitted}, admitted=True)


def admit(services: Services, run: RunRecord, held: list[TargetRow], limit: int) -> list[TargetRow]:
    """Admits held targets, in the run's order, while fewer than `limit` are; returns those admitted."""
    ordered = sorted(held, key=lambda r: (r.seq, r.target))
    room = services.runs.take_admissions(run.run_id, len(ordered), limit) if limit else 0
    if room <= 0:
        return []
    admitted = services.targets.admit(run.run_id, ordered[:room])
    if len(admitted) < room:  # admitted (or decided) by someone else meanwhile
        services.runs.take_admissions(run.run_id, len(admitted) - room, limit)
    return admitted


def give_back(services: Services, run: RunRecord, rows: list[TargetRow]) -> None:
    """A batch that the gate holds gives the targets it claimed back: pending, queued again when
    the run goes on; a hold that ends by itself (a window, a bake) gets a look at its end."""
    if rows:
        services.targets.release(run.run_id, rows)
        hold(services, run, rows)
        return
    now = gate_now(services, run)
    if now.resumes_at is not None:
        wake_at(services, run.run_id, now.resumes_at, services.run_cache.cached_steering(run.run_id), reason=now.reason)


def wake_at(
    services: Services, run_id: str, moment: datetime, steering: Steering | None = None, *, reason: str | None = None
) -> None:
    """Makes sure a message looks at the run at `moment` (once, whoever asks); a hold the gate found
    (`reason`: a window closed) is logged then, once."""
    when = iso(moment)
    if steering is not None and steering.wake_at == when:
        return
    if services.runs.change_steering(run_id, lambda s: None if s.wake_at == when else replace(s, wake_at=when)):
        send_wake(services, run_id, moment)
        if reason is not None:
            event(
                "runWaiting",
                "Run %s waits (%s) until %s",
                run_id,
                reason,
                when,
                runId=run_id,
                reason=reason,
                resumesAt=when,
            )


def send_wake(services: Services, run_id: str, moment: datetime) -> None:
    """The message itself; one delayed longer than a queue allows arrives early and is sent on again."""
    delay = (moment - services.now()).total_seconds()
    services.dispatcher.send_steps([(AdvanceRun(run_id=run_id).encode(), max(0, int(delay + 0.999)))])


def release(services: Services, run_id: str) -> None:
    """Queues every pending target of the run that may go now (a ReleaseTargets message: a run
    resumed or through a hold, a step of its plan begun), admitting held ones while the step has room."""
    run = services.runs.get_run(run_id)
    if run is None or run.target is None:
        return
    now = gate(run.steering, run.plan, services.now())
    if not now.go:
        if now.resumes_at is not None:
            wake_at(services, run_id, now.resumes_at, run.steering, reason=now.reason)
        return
    rows = services.targets.rows_in(run_id)
    if not now.admitted_only:
        services.dispatcher.send_targets(run_id, {r.target: r.etag for r in rows})
        return
    services.dispatcher.send_targets(run_id, {r.target: r.etag for r in rows if r.admitted}, admitted=True)
    held = [r for r in rows if not r.admitted]
    read = services.runs.progress(run_id) if held else None
    if read is not None:
        _, progress, _ = read
        limit = admission_limit(run.steering, run.plan, targets=progress.targets, discovering=progress.discovering)
        admitted = admit(services, run, held, limit or 0)
        services.dispatcher.send_targets(run_id, {r.target: r.etag for r in admitted}, admitted=True)
