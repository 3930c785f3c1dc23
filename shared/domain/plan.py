"""A run's plan: the steps it goes through (upgrade a number or a share of its targets, pause for an
operator, bake for a while), the failure budget of each step, and the maintenance window it works in.

A canary is the one-step plan: `{"targets": N, "maxFailedPercent": P, "pause": B}` is the steps
`upgrade N` (and `pause` when B), with the budget P. After the last step every remaining target
is upgraded."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

from shared.domain.windows import Window
from shared.foundation.durations import DurationError, parse_duration

MAX_STEPS = 20
MAX_TARGETS = 10_000_000
PLAN_KEYS = ("steps", "maxFailedPercent", "window")
CANARY_KEYS = ("targets", "maxFailedPercent", "pause")
MAX_CANARY = 10_000


class PlanError(ValueError):
    """A malformed plan; the message names the field and the rule."""


@dataclass(frozen=True)
class UpgradeStep:
    """Go on until `targets` of the run's targets (cumulative), or `percent` % of them, are decided."""

    targets: int | None = None
    percent: float | None = None

    def limit(self, total: int) -> int:
        """How many targets the run has decided by the end of this step, of `total`."""
        if self.targets is not None:
            return self.targets
        return math.ceil((self.percent or 0) * total / 100 - 1e-9)

    def to_dict(self) -> dict:
        return {"upgrade": {"targets": self.targets} if self.targets is not None else {"percent": self.percent}}


@dataclass(frozen=True)
class PauseStep:
    """Wait for an operator (no duration), or bake for `duration` (ISO 8601)."""

    duration: str | None = None

    @property
    def length(self) -> timedelta | None:
        return parse_duration(self.duration) if self.duration else None

    def to_dict(self) -> dict:
        return {"pause": {"duration": self.duration} if self.duration else {}}


Step = UpgradeStep | PauseStep


@dataclass(frozen=True, kw_only=True)
class Plan:
    steps: tuple[Step, ...]
    max_failed_percent: float = 0.0
    window: Window | None = None
    kind: str = "rollout"  # or "canary": the same plan, shown and named as the canary it was asked as

    @property
    def is_canary(self) -> bool:
        return self.kind == "canary"

    def failed_too_many(self, decided: int, failed: int) -> bool:
        return decided > 0 and failed * 100 > self.max_failed_percent * decided

    def to_dict(self) -> dict:
        """The rollout object as the API shows it."""
        return {
            "steps": [step.to_dict() for step in self.steps],
            "maxFailedPercent": self.max_failed_percent,
            "window": self.window.to_dict() if self.window else None,
        }

    def stored(self) -> dict:
        return {**self.to_dict(), "kind": self.kind}

    @classmethod
    def from_stored(cls, data: dict) -> Plan:
        plan = parse_rollout({k: v for k, v in data.items() if k in PLAN_KEYS and v is not None})
        return cls(
            steps=plan.steps, max_failed_percent=plan.max_failed_percent, window=plan.window, kind=data.get("kind", "rollout")
        )

    def canary_dict(self) -> dict:
        """The canary object as the API shows it (a canary plan only)."""
        first = self.steps[0]
        if not isinstance(first, UpgradeStep) or first.targets is None:
            raise ValueError("not a canary plan")
        return {"targets": first.targets, "maxFailedPercent": self.max_failed_percent, "pause": len(self.steps) > 1}

    @classmethod
    def canary(cls, targets: int, max_failed_percent: float = 0.0, pause: bool = False) -> Plan:
        steps: tuple[Step, ...] = (UpgradeStep(targets=targets), *((PauseStep(),) if pause else ()))
        return cls(steps=steps, max_failed_percent=float(max_failed_percent), kind="canary")


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _percent(value: object, where: str) -> float:
    if not _number(value) or not 0 <= value <= 100:
        raise PlanError(f"{where} must be a number from 0 to 100")
    return float(value)


def _upgrade(body: object, where: str) -> UpgradeStep:
    if not isinstance(body, dict):
        raise PlanError(f'{where} must be an object: {{"targets": N}} or {{"percent": P}}')
    unknown = sorted(set(body) - {"targets", "percent"})
    if unknown:
        raise PlanError(f"{where} has unknown key(s) {', '.join(unknown)}; allowed: targets, percent")
    if ("targets" in body) == ("percent" in body):
        raise PlanError(f"{where} must give exactly one of targets and percent")
    if "targets" in body:
        targets = body["targets"]
        if not isinstance(targets, int) or isinstance(targets, bool) or not 1 <= targets <= MAX_TARGETS:
            raise PlanError(f"{where}.targets must be an integer from 1 to {MAX_TARGETS}")
        return UpgradeStep(targets=targets)
    percent = body["percent"]
    if not _number(percent) or not 1 <= percent <= 100:
        raise PlanError(f"{where}.percent must be a number from 1 to 100")
    return UpgradeStep(percent=float(percent))


def _pause(body: object, where: str) -> PauseStep:
    if not isinstance(body, dict):
        raise PlanError(f'{where} must be an object: {{}} (wait for an operator) or {{"duration": "PT4H"}}')
    unknown = sorted(set(body) - {"duration"})
    if unknown:
        raise PlanError(f"{where} has unknown key(s) {', '.join(unknown)}; allowed: duration")
    if "duration" not in body:
        return PauseStep()
    try:
        length = parse_duration(body["duration"])
    except DurationError as exc:
        raise PlanError(f"{where}.duration {exc}") from None
    if length <= timedelta(0):
        raise PlanError(f"{where}.duration must be longer than zero")
    return PauseStep(duration=body["duration"].strip().upper())


def _step(item: object, where: str) -> Step:
    if not isinstance(item, dict) or len(item) != 1:
        raise PlanError(f'{where} must be an object with one key, "upgrade" or "pause"')
    ((kind, body),) = item.items()
    if kind == "upgrade":
        return _upgrade(body, f"{where}.upgrade")
    if kind == "pause":
        return _pause(body, f"{where}.pause")
    raise PlanError(f'{where} is an unknown step {kind!r}; steps are "upgrade" and "pause"')


def parse_rollout(data: object, where: str = "rollout") -> Plan:
    """A rollout plan from its JSON form; PlanError naming the field when it is malformed."""
    if not isinstance(data, dict):
        raise PlanError(f'{where} must be an object: {{"steps": [...], "maxFailedPercent": P, "window": {{...}}}}')
    unknown = sorted(set(data) - set(PLAN_KEYS))
    if unknown:
        raise PlanError(f"{where} has unknown key(s) {', '.join(unknown)}; allowed: {', '.join(PLAN_KEYS)}")
    steps = data.get("steps")
    if not isinstance(steps, list) or not 1 <= len(steps) <= MAX_STEPS:
        raise PlanError(f"{where}.steps must be an array of 1 to {MAX_STEPS} steps")
    parsed = tuple(_step(item, f"{where}.steps[{i}]") for i, item in enumerate(steps))
    budget = _percent(data.get("maxFailedPercent", 0), f"{where}.maxFailedPercent")
    window = None
    if data.get("window") is not None:
        try:
            window = Window.parse(data["window"], f"{where}.window")
        except ValueError as exc:
            raise PlanError(str(exc)) from None
    return Plan(steps=parsed, max_failed_percent=budget, window=window)


def parse_canary(data: object, where: str = "canary") -> Plan:
    """The canary object of POST /api/publish as its one-step plan."""
    if not isinstance(data, dict):
        raise PlanError(f'{where} must be an object: {{"targets": N, "maxFailedPercent": P, "pause": false}}.')
    unknown = sorted(set(data) - set(CANARY_KEYS))
    if unknown:
        raise PlanError(f"Unknown {where} field(s): {', '.join(unknown)}. Allowed: {', '.join(CANARY_KEYS)}.")
    size = data.get("targets")
    if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= MAX_CANARY:
        raise PlanError(f"{where}.targets must be an integer from 1 to {MAX_CANARY}.")
    percent = data.get("maxFailedPercent", 0)
    if not _number(percent) or not 0 <= percent <= 100:
        raise PlanError(f"{where}.maxFailedPercent must be a number from 0 to 100.")
    pause = data.get("pause", False)
    if not isinstance(pause, bool):
        raise PlanError(f"{where}.pause must be true or false.")
    return Plan.canary(size, float(percent), pause)
