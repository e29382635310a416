"""The Kubernetes HorizontalPodAutoscaler's arithmetic, as pure functions.

``floe local up --autoscale`` scales broker processes the way an HPA
(autoscaling/v2) scales broker pods, so that what is measured locally is what
a cluster will do. This module holds only the maths of
``pkg/controller/podautoscaler`` (``replica_calculator.go`` and
``horizontal.go``), with time passed in, no I/O and no clock:

1. the replica calculation: ``desired = ceil(current * metric / target)``,
   unchanged while ``|metric / target - 1| <= tolerance`` (0.1);
2. stabilization (``stabilizeRecommendationWithBehaviors``): the
   recommendation is the *lowest* desired count seen in the scale-up window
   and the *highest* seen in the scale-down window (defaults 0 s and 300 s),
   so the cluster never shrinks on a short dip;
3. rate limits (``convertDesiredReplicasWithBehaviorRate``): each policy
   (``Pods`` or ``Percent`` per ``period_seconds``) bounds the change
   relative to the replica count at the start of its period, and
   ``select_policy`` ``Max`` takes the policy that allows the largest change;
4. ``min_replicas``/``max_replicas``.

The loop in :mod:`floe_cli.local.autoscale` feeds it measurements and
applies its answers; :class:`Autoscaler` keeps the histories the real
controller keeps per HPA object.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

DEFAULT_TOLERANCE = 0.1

PolicyType = Literal["Pods", "Percent"]
SelectPolicy = Literal["Max", "Min", "Disabled"]


@dataclass(frozen=True)
class ScalingPolicy:
    type: PolicyType
    value: int
    period_seconds: float


@dataclass(frozen=True)
class ScalingRules:
    stabilization_window_seconds: float
    policies: tuple[ScalingPolicy, ...]
    select_policy: SelectPolicy = "Max"


def default_scale_up() -> ScalingRules:
    """The HPA's default: double or add 4 pods every 15 s, whichever is more; no stabilization."""
    return ScalingRules(0.0, (ScalingPolicy("Percent", 100, 15), ScalingPolicy("Pods", 4, 15)), "Max")


def default_scale_down() -> ScalingRules:
    """The HPA's default: remove up to 100% every 15 s, after a 300 s stabilization window."""
    return ScalingRules(300.0, (ScalingPolicy("Percent", 100, 15),), "Max")


@dataclass(frozen=True)
class Behavior:
    scale_up: ScalingRules = field(default_factory=default_scale_up)
    scale_down: ScalingRules = field(default_factory=default_scale_down)


@dataclass(frozen=True)
class ScaleEvent:
    at: float
    change: int  # always positive; direction is the list it sits in


@dataclass(frozen=True)
class Recommendation:
    at: float
    replicas: int


def raw_desired(current: int, metric: float, target: float, *, tolerance: float = DEFAULT_TOLERANCE) -> int:
    """``ceil(current * metric / target)``, or ``current`` within the tolerance band.

    ``metric`` is the per-replica average (an ``AverageValue`` Pods/Object
    metric), ``target`` its target value.
    """
    if target <= 0:
        raise ValueError("target must be positive")
    if current <= 0:
        return current
    ratio = metric / target
    if abs(ratio - 1.0) <= tolerance:
        return current
    return math.ceil(ratio * current)


def stabilize(
    recommendations: list[Recommendation], *, now: float, current: int, desired: int, behavior: Behavior
) -> int:
    """``stabilizeRecommendationWithBehaviors``: clamp by the windows' min (up) and max (down)."""
    up_cutoff = now - behavior.scale_up.stabilization_window_seconds
    down_cutoff = now - behavior.scale_down.stabilization_window_seconds
    up, down = desired, desired
    for rec in recommendations:
        if rec.at > up_cutoff:
            up = min(up, rec.replicas)
        if rec.at > down_cutoff:
            down = max(down, rec.replicas)
    out = current
    if out < up:
        out = up
    if out > down:
        out = down
    return out


def _changes_in_period(events: list[ScaleEvent], *, now: float, period: float) -> int:
    cutoff = now - period
    return sum(e.change for e in events if e.at > cutoff)


def scale_up_limit(
    current: int, *, now: float, up_events: list[ScaleEvent], down_events: list[ScaleEvent], rules: ScalingRules
) -> int:
    """``calculateScaleUpLimitWithScalingRules``."""
    if rules.select_policy == "Disabled":
        return current
    result = -(2**31) if rules.select_policy == "Max" else 2**31 - 1
    for p in rules.policies:
        added = _changes_in_period(up_events, now=now, period=p.period_seconds)
        deleted = _changes_in_period(down_events, now=now, period=p.period_seconds)
        start = current - added + deleted
        proposed = start + p.value if p.type == "Pods" else math.ceil(start * (1 + p.value / 100))
        result = max(result, proposed) if rules.select_policy == "Max" else min(result, proposed)
    return result


def scale_down_limit(
    current: int, *, now: float, up_events: list[ScaleEvent], down_events: list[ScaleEvent], rules: ScalingRules
) -> int:
    """``calculateScaleDownLimitWithBehaviors``."""
    if rules.select_policy == "Disabled":
        return current
    result = 2**31 - 1 if rules.select_policy == "Max" else -(2**31)
    for p in rules.policies:
        added = _changes_in_period(up_events, now=now, period=p.period_seconds)
        deleted = _changes_in_period(down_events, now=now, period=p.period_seconds)
        start = current - added + deleted
        proposed = start - p.value if p.type == "Pods" else int(start * (1 - p.value / 100))
        result = min(result, proposed) if rules.select_policy == "Max" else max(result, proposed)
    return result


def apply_rate_limits(
    current: int, desired: int, *, now: float, min_replicas: int, max_replicas: int,
    up_events: list[ScaleEvent], down_events: list[ScaleEvent], behavior: Behavior,
) -> int:
    """``convertDesiredReplicasWithBehaviorRate``: policies, then min/max replicas."""
    if desired > current:
        limit = scale_up_limit(current, now=now, up_events=up_events, down_events=down_events,
                               rules=behavior.scale_up)
        limit = max(limit, current)
        maximum = min(max_replicas, limit)
        return max(min(desired, maximum), min_replicas)
    if desired < current:
        limit = scale_down_limit(current, now=now, up_events=up_events, down_events=down_events,
                                 rules=behavior.scale_down)
        limit = min(limit, current)
        minimum = max(min_replicas, limit)
        return min(max(desired, minimum), max_replicas)
    return min(max(desired, min_replicas), max_replicas)


@dataclass
class Autoscaler:
    """One HPA object: its spec and the histories the controller keeps for it."""

    min_replicas: int
    max_replicas: int
    target: float
    behavior: Behavior = field(default_factory=Behavior)
    tolerance: float = DEFAULT_TOLERANCE
    recommendations: list[Recommendation] = field(default_factory=list)
    up_events: list[ScaleEvent] = field(default_factory=list)
    down_events: list[ScaleEvent] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise ValueError("need 1 <= min_replicas <= max_replicas")

    def desired(self, *, now: float, current: int, metric: float | None) -> int:
        """The replica count to scale to now; ``metric`` None (no data yet) keeps ``current``
        within the min/max bounds, as the HPA does when its metric is missing."""
        if metric is None:
            return min(max(current, self.min_replicas), self.max_replicas)
        raw = raw_desired(current, metric, self.target, tolerance=self.tolerance)
        stabilized = stabilize(self.recommendations, now=now, current=current, desired=raw,
                               behavior=self.behavior)
        self._remember(now, raw)
        return apply_rate_limits(current, stabilized, now=now, min_replicas=self.min_replicas,
                                 max_replicas=self.max_replicas, up_events=self.up_events,
                                 down_events=self.down_events, behavior=self.behavior)

    def scaled(self, *, now: float, old: int, new: int) -> None:
        """Record a scale event (the controller's ``storeScaleEvent``)."""
        if new > old:
            self.up_events.append(ScaleEvent(now, new - old))
        elif new < old:
            self.down_events.append(ScaleEvent(now, old - new))
        keep = max([p.period_seconds for p in (*self.behavior.scale_up.policies,
                                                *self.behavior.scale_down.policies)] or [0.0])
        self.up_events = [e for e in self.up_events if e.at > now - keep]
        self.down_events = [e for e in self.down_events if e.at > now - keep]

    def _remember(self, now: float, replicas: int) -> None:
        keep = max(self.behavior.scale_up.stabilization_window_seconds,
                   self.behavior.scale_down.stabilization_window_seconds)
        self.recommendations = [r for r in self.recommendations if r.at > now - keep]
        self.recommendations.append(Recommendation(now, replicas))
