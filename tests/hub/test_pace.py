"""The hub's heartbeat pace: pure."""

from __future__ import annotations

import pytest

from hub.pace import Pace, Pacer, describe, ideal, rounded, telemetry_interval


@pytest.mark.parametrize(("agents", "expected"), [(0, 5.0), (500, 5.0), (1000, 10.0),
                                                  (10_000, 100.0)])  # fmt: skip
def test_the_ideal_interval_keeps_the_hub_at_its_rate(agents: int, expected: float) -> None:
    assert ideal(agents, minimum=5.0, rate=100.0) == expected


def test_intervals_round_up_to_whole_seconds_and_keep_a_fractional_minimum() -> None:
    assert rounded(10.2, 5.0) == 11.0  # up: the rate stays at or under the target
    assert rounded(0.5, 0.5) == 0.5
    assert telemetry_interval(5.0) == 60.0 and telemetry_interval(100.0) == 100.0


def test_the_pace_changes_only_when_the_ideal_moved_far() -> None:
    pacer = Pacer(minimum=5.0, rate=100.0)
    assert pacer.current == Pace(5.0, 60.0)
    assert pacer.update(600) is None  # 6 s ideal: not more than 25 % above 5 s
    assert pacer.update(700) == Pace(7.0, 60.0)  # 7 s > 6.25 s
    assert pacer.update(800) is None  # 8 s is within 25 % of 7 s
    assert pacer.update(10_000) == Pace(100.0, 100.0)
    assert pacer.update(6_000) is None  # 60 s: above half of 100 s
    assert pacer.update(4_900) == Pace(49.0, 60.0)  # 49 s < 50 s
    assert pacer.update(450) == Pace(5.0, 60.0)  # back at the minimum
    assert pacer.update(0) is None


def test_connects_one_by_one_repace_a_few_times_only() -> None:
    pacer = Pacer(minimum=5.0, rate=100.0)
    changes = [n for n in range(10_001) if pacer.update(n) is not None]
    assert len(changes) <= 12, changes
    # Hysteresis: the hub-wide rate stays within 25 % of the target.
    assert 100.0 / 1.25 <= pacer.current.heartbeat_s <= 100.0


def test_help_says_what_the_defaults_give() -> None:
    assert describe(10_000, 5.0, 100.0) == (
        "10,000 agents: a heartbeat every 100 s (100/s), telemetry at least every 100 s"
    )
