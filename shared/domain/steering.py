"""How a run is steered, and the rules that steer it, without I/O.

`Steering` is what the run row holds: cancelled (by whom), paused for an operator (why), waiting
for a time (a bake, the catalog), the step of its plan it is in, and its error. Two pure rules
decide from it, the run's `Plan`, its `Progress` and the time:

  gate     may targets be decided now? go (perhaps only those admitted to the current step),
           hold (paused, waiting, outside the window: when it goes on by itself), or stop;
  advance  what comes next: a step done (or failed: paused), a bake begun or over, a pause for
           an operator, targets to admit and queue (a step begun, the plan through).

They are the only place that knows what a canary, a step, a bake or a window mean; the stores
persist what they return and the steering package applies it."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from shared.domain.plan import PauseStep, Plan, UpgradeStep
from shared.foundation.errors import ErrorInfo

# run errors that stop the run; after any other (discoveryIncomplete) the targets found are still processed
FATAL_ERRORS = frozenset(
    {
        "appNotFound",
        "appAmbiguous",
        "versionNotPublished",
        "catalogError",
        "startFailed",
        "runInProgress",
        "missingPermissions",
        "groupNotFound",
    }
)
GO, HOLD, STOP = "go", "hold", "stop"
CATALOG_FIRST_CHECK = 5.0  # seconds until a run waiting for its version looks at the catalog again ...
CATALOG_LONGEST_CHECK = 300.0  # ... doubling each time, up to this


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass(frozen=True)
class Caller:
    """Who asked: an Entra identity (object id and name), or a description of the trigger."""

    object_id: str | None
    name: str

    def to_dict(self) -> dict:
        return {"objectId": self.object_id, "name": self.name}

    @classmethod
    def from_dict(cls, data: dict | None) -> Caller:
        data = data or {}
        return cls(data.get("objectId"), data.get("name") or "unknown")


@dataclass(frozen=True)
class Progress:
    """A run's figures as its counters say now."""

    targets: int = 0  # found so far
    decided: int = 0  # with an outcome
    failed: int = 0
    admitted: int = 0  # admitted to the plan's steps, their rows recorded
    slots: int = 0  # admissions taken, their rows recorded or being recorded
    discovering: bool = False  # discovery steps outstanding


@dataclass(frozen=True)
class Steering:
    cancelled_at: str | None = None
    cancelled_by: Caller | None = None
    pause: dict | None = None  # {"reason", "step", "decided", "failed", "at"} while paused for an operator
    wait: dict | None = None  # {"reason": "bake" | "catalog", "resumesAt", ...} while waiting for a time
    step: int = 0  # the plan's next step to carry out; len(steps) once through the plan
    base: tuple[int, int] = (0, 0)  # decided and failed when the current step began
    results: tuple[dict, ...] = ()  # each upgrade step done: {"step", "decided", "failed", "at"}
    error: ErrorInfo | None = None
    wake_at: str | None = None  # when a message looks at the run again (the end of a bake, a window's opening)

    @property
    def stopped(self) -> bool:
        """No more upgrades: cancelled, or failed for good."""
        return self.cancelled_at is not None or (self.error is not None and self.error.code in FATAL_ERRORS)

    @property
    def holding(self) -> bool:
        """No upgrade for now: paused, or waiting for a time (and not stopped)."""
        return (self.pause is not None or self.wait is not None) and not self.stopped


@dataclass(frozen=True)
class Gate:
    verdict: str  # GO, HOLD or STOP
    reason: str | None = None  # HOLD: "paused", "bake", "catalog" or "window"
    resumes_at: datetime | None = None  # HOLD: when the run goes on by itself (None: an operator must)
    admitted_only: bool = False  # GO: only targets admitted to the current step may be decided

    @property
    def go(self) -> bool:
        return self.verdict == GO


def next_catalog_check(checks: int, waited: timedelta, limit: timedelta) -> timedelta | None:
    """How long until a run waiting for its version looks at the catalog again, after `checks`
    looks and `waited` in all; None once it has waited `limit` (CATALOG_WAIT): then it fails."""
    if waited >= limit:
        return None
    return min(timedelta(seconds=min(CATALOG_FIRST_CHECK * 2**checks, CATALOG_LONGEST_CHECK)), limit - waited)


def limited(steering: Steering, plan: Plan | None) -> bool:
    """Whether targets must be admitted to the plan's current step before they are decided."""
    return plan is not None and steering.step < len(plan.steps)


def gate(steering: Steering, plan: Plan | None, now: datetime) -> Gate:
    if steering.stopped:
        return Gate(STOP)
    if steering.pause is not None:
        return Gate(HOLD, "paused")
    if steering.wait is not None:
        return Gate(HOLD, steering.wait["reason"], parse_iso(steering.wait["resumesAt"]))
    if plan is not None and plan.window is not None:
        opens = plan.window.next_opening(now)
        if opens is not None:
            return Gate(HOLD, "window", opens)
    return Gate(GO, admitted_only=limited(steering, plan))


def admission_limit(steering: Steering, plan: Plan | None, *, targets: int, discovering: bool) -> int | None:
    """How many targets the current step admits in all (cumulative); None when it admits every
    target (no plan, or through it). A percent step admits none more until discovery is over."""
    if not limited(steering, plan):
        return None
    step = plan.steps[steering.step]
    if isinstance(step, PauseStep) or (step.percent is not None and discovering):  # (a pause is taken at once)
        return 0
    return step.limit(targets)


@dataclass(frozen=True)
class Advance:
    steering: Steering
    release: bool = False  # admit held targets up to the step's limit and queue what may go
    wake_at: datetime | None = None  # look again then (a bake ends)
    notes: tuple[tuple[str, dict], ...] = field(default=())  # what happened, in order, for the log

    def changed(self, before: Steering) -> bool:
        return self.steering != before


def advance(steering: Steering, plan: Plan | None, progress: Progress, now: datetime) -> Advance:
    """The run's next move through its plan, from what its counters say now. A pause or a bake
    takes the run past its step at once: resuming (or the bake's end) only lifts the hold."""
    s = steering
    if plan is None or s.stopped or s.pause is not None:
        return Advance(s)
    notes: list[tuple[str, dict]] = []
    if s.wait is not None:
        if s.wait["reason"] != "bake" or now < parse_iso(s.wait["resumesAt"]):
            return Advance(s)
        notes.append(("baked", {"step": s.wait["step"]}))
        s = replace(s, wait=None)
    entered = s.step
    while s.step < len(plan.steps):
        index, step = s.step, plan.steps[s.step]
        if isinstance(step, PauseStep):
            length = step.length
            if length is not None:
                until = now + length
                s = replace(s, step=index + 1, wait={"reason": "bake", "step": index, "resumesAt": iso(until)})
                notes.append(("bake", {"step": index, "resumesAt": iso(until)}))
                return Advance(s, False, until, tuple(notes))
            last = s.results[-1] if s.results else {"decided": 0, "failed": 0}
            reason = "canaryPassed" if plan.is_canary else "step"
            s = replace(s, step=index + 1, pause=_pause(reason, index, last["decided"], last["failed"], now))
            notes.append(("paused", s.pause))
            return Advance(s, False, None, tuple(notes))
        done, wanted = _upgrade_step(step, progress)
        if not done:
            return Advance(s, wanted, None, tuple(notes))
        decided, failed = progress.decided - s.base[0], progress.failed - s.base[1]
        result = {"step": index, "decided": decided, "failed": failed, "at": iso(now)}
        following = index + 1
        breach = plan.failed_too_many(decided, failed)
        if breach and following < len(plan.steps) and plan.steps[following] == PauseStep():
            following += 1  # the pause for the breach stands for the plan's own pause for an operator
        s = replace(s, step=following, base=(progress.decided, progress.failed), results=(*s.results, result))
        notes.append(("stepDone", result))
        if breach:
            s = replace(s, pause=_pause("canaryFailed" if plan.is_canary else "stepFailed", index, decided, failed, now))
            notes.append(("paused", s.pause))
            return Advance(s, False, None, tuple(notes))
    if entered < len(plan.steps) or notes:  # through the plan just now: every target goes
        notes.append(("planDone", {"step": s.step}))
        return Advance(s, True, None, tuple(notes))
    return Advance(s)


def _pause(reason: str, step: int, decided: int, failed: int, now: datetime) -> dict:
    return {"reason": reason, "step": step, "decided": decided, "failed": failed, "at": iso(now)}


def current_step(steering: Steering) -> int:
    """The step an operator sees the run in: the pause or bake it holds at, else the one it carries out."""
    hold = steering.pause or steering.wait
    return hold["step"] if hold and "step" in hold else steering.step


def _upgrade_step(step: UpgradeStep, progress: Progress) -> tuple[bool, bool]:
    """(whether the step is done, whether held targets should be admitted to it now)."""
    p = progress
    if step.percent is not None and p.discovering:
        return False, False  # its size is known once discovery is over
    limit = step.limit(p.targets)
    held = p.targets > p.admitted
    full = p.admitted >= limit or (not p.discovering and not held)
    if full and p.slots <= p.admitted and p.decided >= p.admitted:
        return True, False
    return False, p.admitted < limit and held
