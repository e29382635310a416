"""The local autoscaler's HPA arithmetic, against worked examples from the Kubernetes
HPA documentation and controller (pure, no processes; milliseconds)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from floe_cli.local import hpa
from floe_cli.local.hpa import Autoscaler, Behavior, ScaleEvent, ScalingPolicy, ScalingRules


def test_formula_is_ceil_of_current_times_ratio() -> None:
    assert hpa.raw_desired(2, 5.0, 1.2) == 9  # ceil(2 * 4.1667)
    assert hpa.raw_desired(4, 50, 100) == 2
    assert hpa.raw_desired(3, 200, 100) == 6
    assert hpa.raw_desired(5, 0, 100) == 0  # clamped to min replicas by the caller


def test_tolerance_band_keeps_the_count() -> None:
    assert hpa.raw_desired(4, 109, 100) == 4
    assert hpa.raw_desired(4, 91, 100) == 4
    assert hpa.raw_desired(4, 111, 100) == 5
    assert hpa.raw_desired(4, 89, 100) == 4  # ceil(3.56) = 4: outside the band, same answer
    assert hpa.raw_desired(4, 70, 100) == 3
    assert hpa.raw_desired(4, 111, 100, tolerance=0.2) == 4


def test_default_scale_up_doubles_or_adds_four_per_15s() -> None:
    b = Behavior()
    # From 2: Percent 100 -> 4, Pods 4 -> 6; selectPolicy Max -> 6.
    assert hpa.apply_rate_limits(2, 20, now=100, min_replicas=1, max_replicas=50,
                                 up_events=[], down_events=[], behavior=b) == 6
    # From 10: Percent 100 -> 20 wins.
    assert hpa.apply_rate_limits(10, 40, now=100, min_replicas=1, max_replicas=50,
                                 up_events=[], down_events=[], behavior=b) == 20
    # Already added 4 within the period: the period started at 2, so the limit is still 6.
    assert hpa.apply_rate_limits(6, 20, now=100, min_replicas=1, max_replicas=50,
                                 up_events=[ScaleEvent(95, 4)], down_events=[], behavior=b) == 6
    # ... and after the period the next step is allowed.
    assert hpa.apply_rate_limits(6, 20, now=111, min_replicas=1, max_replicas=50,
                                 up_events=[ScaleEvent(95, 4)], down_events=[], behavior=b) == 12


def test_select_policy_min_and_disabled() -> None:
    rules = ScalingRules(0, (ScalingPolicy("Percent", 100, 15), ScalingPolicy("Pods", 1, 15)), "Min")
    b = Behavior(scale_up=rules)
    assert hpa.apply_rate_limits(4, 10, now=0, min_replicas=1, max_replicas=10,
                                 up_events=[], down_events=[], behavior=b) == 5
    off = Behavior(scale_down=ScalingRules(0, (ScalingPolicy("Pods", 1, 15),), "Disabled"))
    assert hpa.apply_rate_limits(4, 1, now=0, min_replicas=1, max_replicas=10,
                                 up_events=[], down_events=[], behavior=off) == 4


def test_scale_down_percent_truncates_and_pods_policy() -> None:
    b = Behavior(scale_down=ScalingRules(0, (ScalingPolicy("Percent", 50, 60),), "Max"))
    assert hpa.apply_rate_limits(5, 1, now=0, min_replicas=1, max_replicas=10,
                                 up_events=[], down_events=[], behavior=b) == 2  # int(5 * 0.5)
    b = Behavior(scale_down=ScalingRules(0, (ScalingPolicy("Pods", 1, 10),), "Max"))
    assert hpa.apply_rate_limits(5, 1, now=0, min_replicas=1, max_replicas=10,
                                 up_events=[], down_events=[], behavior=b) == 4
    assert hpa.apply_rate_limits(4, 1, now=5, min_replicas=1, max_replicas=10,
                                 up_events=[], down_events=[ScaleEvent(0, 1)], behavior=b) == 4
    assert hpa.apply_rate_limits(4, 1, now=11, min_replicas=1, max_replicas=10,
                                 up_events=[], down_events=[ScaleEvent(0, 1)], behavior=b) == 3


def test_min_and_max_replicas_bound_the_answer() -> None:
    a = Autoscaler(min_replicas=2, max_replicas=5, target=100,
                   behavior=Behavior(scale_down=ScalingRules(0, (ScalingPolicy("Percent", 100, 15),))))
    assert a.desired(now=0, current=2, metric=10_000) == 5  # policies allow 6 (Pods 4); max is 5
    a = Autoscaler(min_replicas=2, max_replicas=5, target=100,
                   behavior=Behavior(scale_down=ScalingRules(0, (ScalingPolicy("Percent", 100, 15),))))
    assert a.desired(now=0, current=4, metric=1) == 2
    assert a.desired(now=1, current=3, metric=None) == 3
    with pytest.raises(ValueError):
        Autoscaler(min_replicas=3, max_replicas=2, target=1)


def test_scale_down_waits_for_the_stabilization_window() -> None:
    b = Behavior(scale_down=ScalingRules(30, (ScalingPolicy("Percent", 100, 15),)))
    a = Autoscaler(min_replicas=2, max_replicas=10, target=100, behavior=b)
    assert a.desired(now=0, current=6, metric=100) == 6  # on target: recommendation 6
    # The load drops; the 6 recommended at t=0 holds the count for the 30 s window.
    for t in range(1, 30):
        assert a.desired(now=t, current=6, metric=30) == 6, t
    assert a.desired(now=30.5, current=6, metric=30) == 2  # ceil(6 * 0.3) = 2


def test_scale_up_stabilization_takes_the_window_minimum() -> None:
    b = Behavior(scale_up=ScalingRules(10, (ScalingPolicy("Pods", 100, 1),)),
                 scale_down=ScalingRules(0, (ScalingPolicy("Pods", 100, 1),)))
    a = Autoscaler(min_replicas=1, max_replicas=100, target=100, behavior=b)
    assert a.desired(now=0, current=2, metric=100) == 2
    assert a.desired(now=1, current=2, metric=400) == 2  # the 2 at t=0 is still in the up window
    assert a.desired(now=10.5, current=2, metric=400) == 8


def test_scale_events_record_and_expire() -> None:
    a = Autoscaler(min_replicas=1, max_replicas=10, target=1)
    a.scaled(now=0, old=2, new=4)
    a.scaled(now=1, old=4, new=3)
    assert a.up_events == [ScaleEvent(0, 2)] and a.down_events == [ScaleEvent(1, 1)]
    a.scaled(now=100, old=3, new=3)
    assert a.up_events == [] and a.down_events == []


@given(current=st.integers(1, 50), metric=st.floats(0, 1e4), target=st.floats(1, 1e3),
       lo=st.integers(1, 10), span=st.integers(0, 40))
def test_answer_always_within_bounds_and_moves_toward_the_formula(
    current: int, metric: float, target: float, lo: int, span: int
) -> None:
    hi = lo + span
    zero = ScalingRules(0, (ScalingPolicy("Percent", 100, 15), ScalingPolicy("Pods", 4, 15)))
    a = Autoscaler(min_replicas=lo, max_replicas=hi, target=target, behavior=Behavior(zero, zero))
    got = a.desired(now=0, current=current, metric=metric)
    assert lo <= got <= hi
    raw = hpa.raw_desired(current, metric, target)
    if lo <= current <= hi:
        assert min(current, raw) <= max(got, lo) and got <= max(current, raw, lo)
