"""The agent's pacing rules at their edges: when heartbeats fall, and when one carries GPU
telemetry (agent/pace.py)."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from agent.pace import Beats, telemetry_due
from agent.probes import GpuInfo, GpuProcess
from hub.sessions import AgentSession

H100 = GpuInfo(0, "GPU-1", "NVIDIA H100", "nvidia", 81559, 40000, "9.0",
               utilization_percent=50, temperature_c=60.0, power_draw_w=300.0,
               processes=(GpuProcess(10, 39000),))  # fmt: skip
SMALL = GpuInfo(1, "GPU-2", "NVIDIA RTX A400", "nvidia", 2048, 100, "8.6")


def moves(before: GpuInfo, after: GpuInfo) -> bool:
    """Whether a beat 1 s after the last sent telemetry carries it (interval 60 s)."""
    return telemetry_due((before,), (after,), 1.0, 60.0)


def test_the_first_beat_falls_within_one_interval_and_then_keeps_its_slots() -> None:
    beats = Beats(10.0, 100.0, random.Random(3))
    first = beats.due
    assert 100.0 <= first < 110.0
    for k in range(1, 1001):  # beats sent on time: their jitter never adds up
        beats.beat(beats.due)
        assert abs(beats.due - (first + 10.0 * k)) <= 1.0 + 1e-6
    gaps = []
    for _ in range(200):
        at = beats.due
        beats.beat(at)
        gaps.append(beats.due - at)
    assert min(gaps) >= 8.0 - 1e-6 and max(gaps) <= 12.0 + 1e-6
    assert max(gaps) - min(gaps) > 2.0  # jittered, not a fixed period


def test_first_beats_of_many_agents_spread_over_the_interval() -> None:
    offsets = sorted(Beats(5.0, 0.0, random.Random(seed)).due for seed in range(1000))
    assert offsets[0] >= 0 and offsets[-1] < 5.0
    assert max(sum(1 for o in offsets if k * 0.5 <= o < (k + 1) * 0.5) for k in range(10)) < 130


def test_a_stalled_agent_skips_missed_slots_instead_of_bursting() -> None:
    beats = Beats(1.0, 0.0, random.Random(1))
    slot = beats.due
    beats.beat(slot + 5.3)  # the agent was suspended for five intervals
    assert slot + 5.3 <= beats.due <= slot + 7.1
    late = beats.due
    beats.beat(late)
    assert 0.8 - 1e-6 <= beats.due - late <= 1.2 + 1e-6


def test_a_shorter_pace_applies_at_once_and_a_longer_one_from_the_next_beat() -> None:
    beats = Beats(60.0, 0.0, random.Random(5))
    beats.beat(beats.due)
    last = beats.due - 60.0  # about when it beat
    beats.repace(10.0, now=last + 2.0)
    assert last + 2.0 <= beats.due <= last + 12.0  # within one new interval of the last beat
    beats.beat(beats.due)
    at = beats.due
    beats.repace(30.0, now=at - 1.0)
    assert beats.due == at  # the pending beat keeps its time
    beats.beat(at)
    assert 27.0 - 1e-6 <= beats.due - at <= 33.0 + 1e-6


def test_a_shorter_pace_when_already_overdue_spreads_the_next_beat() -> None:
    dues = []
    for seed in range(200):
        beats = Beats(60.0, 0.0, random.Random(seed))
        beats.beat(beats.due)
        now = beats.due - 10.0  # 50 s after the last beat: overdue at a 5 s pace
        beats.repace(5.0, now)
        assert now <= beats.due < now + 5.0
        dues.append(beats.due - now)
    assert max(dues) - min(dues) > 4.0  # not all at once


def test_a_shorter_pace_before_the_first_beat() -> None:
    beats = Beats(60.0, 0.0, random.Random(2))
    beats.repace(5.0, now=0.5)
    assert 0.5 <= beats.due < 5.5


def test_early_beats_one_per_quarter_interval_a_second_from_others_two_per_interval() -> None:
    beats = Beats(8.0, 0.0, random.Random(0))
    assert beats.due == pytest.approx(6.75, abs=0.01)
    assert beats.early_from(0.2) == 1.0  # a second after the welcome
    beats.early(1.0)
    assert beats.early_from(1.5) == 3.0  # a quarter interval after the last early beat
    beats.early(3.0)
    assert beats.early_from(3.1) == pytest.approx(5.0)  # two per interval: the bucket refills
    beats.early(5.0)
    assert beats.early_from(5.1) is None  # the regular beat at 6.75 comes first
    slot = beats.due
    beats.beat(slot)
    assert abs(beats.due - (slot + 8.0)) <= 0.8 + 1e-6  # the early beats shifted no slot
    assert beats.early_from(slot) == pytest.approx(max(slot + 1.0, 9.0))


def test_a_change_just_before_the_regular_beat_rides_on_it() -> None:
    beats = Beats(60.0, 0.0, random.Random(0))
    assert beats.early_from(beats.due - 1.5) == beats.due - 1.5
    assert beats.early_from(beats.due - 0.5) is None


def test_changes_all_the_time_stay_well_inside_the_hubs_allowance() -> None:
    """An agent that has a change to report every second for 500 intervals: all its beats,
    regular and early, are allowed by the hub's own token bucket, and they average at most
    three per interval (the hub allows four)."""
    for interval in (2.0, 8.0, 100.0):
        beats = Beats(interval, 0.0, random.Random(7))
        hub = AgentSession("gpu-a", "id", "peer", 0.0, datetime.now(UTC))
        now, sent = 0.0, 0
        while now < 500 * interval:
            if now >= beats.due:
                beats.beat(now)
            elif (allowed := beats.early_from(now)) is not None and allowed <= now:
                beats.early(now)
            else:
                now = min(beats.due, now + 1.0 if allowed is None else max(allowed, now + 1.0))
                continue
            assert hub.allow_heartbeat(now, interval, sent=now), (interval, now)
            sent += 1
        assert sent <= 3 * 500 + 2, (interval, sent)
        assert sent > 2.5 * 500 if interval > 4 else sent > 1.5 * 500  # early beats did go


def test_telemetry_rides_on_the_first_beat_and_when_due() -> None:
    assert telemetry_due(None, (H100,), 0.0, 60.0)
    assert not telemetry_due((H100,), (H100,), 59.9, 60.0)
    assert telemetry_due((H100,), (H100,), 60.0, 60.0)
    assert telemetry_due((H100,), (H100,), 0.1, 0.0)  # 0: with every heartbeat


def test_a_node_without_gpus_sends_them_once() -> None:
    assert telemetry_due(None, (), 0.0, 60.0)
    assert not telemetry_due((), (), 600.0, 60.0)
    assert not telemetry_due((), (), 1.0, 0.0)
    assert telemetry_due((), (H100,), 1.0, 60.0)  # a GPU came


@pytest.mark.parametrize(
    ("change", "moved"),
    [
        ({"memory_used_mb": 40063}, False),  # 63 MiB
        ({"memory_used_mb": 40064}, True),  # 64 MiB (2 % of 80 GiB would be 1.6 GiB)
        ({"memory_used_mb": 39936}, True),
        ({"utilization_percent": 59}, False),
        ({"utilization_percent": 60}, True),
        ({"utilization_percent": 40}, True),
        ({"utilization_percent": None}, True),  # a reading vanished
        ({"temperature_c": 62.9}, False),
        ({"temperature_c": 63.0}, True),
        ({"temperature_c": 57.0}, True),
        ({"power_draw_w": 329.9}, False),
        ({"power_draw_w": 330.0}, True),  # 10 % of what was sent
        ({"power_draw_w": 270.0}, True),
        ({"power_draw_w": None}, True),
        ({"state": "lost"}, True),
        ({"processes": (GpuProcess(10, 39500),)}, False),  # its memory alone: see memory
        ({"processes": (GpuProcess(11, 39000),)}, True),  # another pid
        ({"processes": (GpuProcess(10, 39000, managed=True),)}, True),
        ({"processes": ()}, True),
        ({"memory_free_mb": 1000}, False),  # follows from used
    ],
)
def test_thresholds_of_a_large_gpu(change: dict[str, object], moved: bool) -> None:
    assert moves(H100, replace(H100, **change)) is moved  # type: ignore[arg-type]


def test_thresholds_of_a_small_gpu_and_readings_that_appear() -> None:
    assert not moves(SMALL, replace(SMALL, memory_used_mb=140))  # 40 MiB < 2 % of 2 GiB
    assert moves(SMALL, replace(SMALL, memory_used_mb=141))  # 41 MiB >= 40.96 MiB
    assert moves(SMALL, replace(SMALL, utilization_percent=0))  # None -> a value
    assert moves(SMALL, replace(SMALL, power_draw_w=3.0))
    idle = replace(SMALL, power_draw_w=0.0)
    assert not moves(idle, replace(idle, power_draw_w=0.9))  # noise around 0 W
    assert moves(idle, replace(idle, power_draw_w=1.0))


def test_a_gpu_that_came_or_went_moves_the_telemetry() -> None:
    assert telemetry_due((H100, SMALL), (H100,), 1.0, 60.0)
    assert telemetry_due((H100,), (H100, SMALL), 1.0, 60.0)
    assert telemetry_due((H100,), (replace(H100, index=2),), 1.0, 60.0)
    assert not telemetry_due((H100, SMALL), (SMALL, H100), 1.0, 60.0)  # order does not matter
