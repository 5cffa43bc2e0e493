"""How often the agent reports (issue 18): when each heartbeat is due, with jitter so that
thousands of agents never beat in phase, when a change may go early in a beat of its own,
and whether a heartbeat carries GPU telemetry.

Pure logic over the event loop's clock and the probe's GpuInfo; agent/link.py drives it."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from agent.probes import GpuInfo

JITTER = 0.1  # a beat falls within +-10 % of an interval around its slot
# Early beats (a change the hub must hear at once): at most one per quarter interval, never
# within EARLY_GAP_S of another beat, and EARLY_RATE per interval over time (a bucket of
# EARLY_BURST): with the regular beat at most three per interval, well inside the hub's
# allowance (hub/sessions.py: a burst of 10, then 4 per interval).
EARLY_SPACING = 0.25
EARLY_GAP_S = 1.0
EARLY_RATE = 2.0
EARLY_BURST = 2.0
# A GPU's telemetry is re-sent when it moved at least this far from what was last sent.
MEMORY_MB = 64
MEMORY_SHARE = 0.02  # of the GPU's total memory; the smaller of the two moves counts
UTILIZATION_POINTS = 10
TEMPERATURE_C = 3.0
POWER_SHARE = 0.10  # of the last sent draw
POWER_FLOOR_W = 1.0  # an idle GPU reading 0 W then 0.4 W has not moved


@dataclass(frozen=True)
class Pace:
    """What the hub asked for: a heartbeat every `heartbeat_s`; GPU telemetry when it changed
    and at least every `telemetry_s` (0: with every heartbeat)."""

    heartbeat_s: float
    telemetry_s: float = 0.0


class Beats:
    """When the next heartbeat is due. The first falls at a random offset within one interval
    of `start` (the welcome); then slot k+1 = slot k + interval and each beat falls at its slot
    +- JITTER x interval, so the jitter never accumulates into drift."""

    def __init__(self, interval: float, start: float, rng: random.Random) -> None:
        self.interval = interval
        self.rng = rng
        self.slot = start + rng.random() * interval
        self.due = self.slot
        self.anchor = start  # the last beat (regular or early), or the welcome before the first
        self.beaten = False
        self.early_last = -math.inf
        self._tokens, self._tokens_at = EARLY_BURST, start  # the early beats' bucket

    def beat(self, at: float) -> None:
        """A heartbeat went out at `at`: schedule the next. Slots missed while the agent was
        stalled are skipped, never sent as a burst."""
        self.anchor, self.beaten = at, True
        self.slot += self.interval
        if self.slot - JITTER * self.interval < at:
            missed = math.ceil((at - self.slot) / self.interval + JITTER)
            self.slot += missed * self.interval
        self.due = self.slot + self.interval * self.rng.uniform(-JITTER, JITTER)

    def early_from(self, now: float) -> float | None:
        """The first moment from `now` on at which an early beat may go; None when the
        regular beat comes first or within EARLY_GAP_S of it (it carries the change)."""
        tokens = self._bucket(now)
        refilled = now if tokens >= 1 else now + (1 - tokens) * self.interval / EARLY_RATE
        at = max(refilled, self.early_last + EARLY_SPACING * self.interval,
                 self.anchor + EARLY_GAP_S)  # fmt: skip
        return at if at < self.due - EARLY_GAP_S else None

    def early(self, at: float) -> None:
        """An early beat went out at `at`. The regular slots stay where they were: an early
        beat is an extra, so the cluster's beats stay spread as they were."""
        self._tokens, self._tokens_at = self._bucket(at) - 1, at
        self.anchor, self.beaten, self.early_last = at, True, at

    def _bucket(self, now: float) -> float:
        refill = max(0.0, now - self._tokens_at) * EARLY_RATE / self.interval
        return min(EARLY_BURST, self._tokens + refill)

    def repace(self, interval: float, now: float) -> None:
        """The hub changed the interval. A longer one applies from the next beat on; a shorter
        one at once: the pending beat comes no later than one new interval after the last
        (a random point of the next new interval when that already passed, so agents paced
        together do not beat together)."""
        if interval < self.interval:
            factor = 1 + self.rng.uniform(-JITTER, JITTER) if self.beaten else self.rng.random()
            target = self.anchor + interval * factor
            if target < now:
                target = now + self.rng.random() * interval
            if target < self.due:
                self.slot = self.due = target
        self._tokens, self._tokens_at = self._bucket(now), now  # refilled at the old pace
        self.interval = interval


def telemetry_due(
    sent: Sequence[GpuInfo] | None,
    found: Sequence[GpuInfo],
    since_sent: float,
    telemetry_s: float,
) -> bool:
    """Whether a heartbeat carries `found`: the first on a stream (`sent` is None), when it
    moved from what was last sent, or when telemetry_s passed since then (0: every beat). A
    node without GPUs has nothing to refresh: after its first beat it sends none."""
    if sent is None:
        return True
    if not sent and not found:
        return False
    if telemetry_s <= 0 or since_sent >= telemetry_s:
        return True
    return moved(sent, found)


def moved(sent: Sequence[GpuInfo], found: Sequence[GpuInfo]) -> bool:
    """A GPU came or went, or one's state, processes or a reading moved past its threshold."""
    before = {gpu.index: gpu for gpu in sent}
    if before.keys() != {gpu.index for gpu in found}:
        return True
    return any(gpu_moved(before[gpu.index], gpu) for gpu in found)


def gpu_moved(sent: GpuInfo, now: GpuInfo) -> bool:
    if sent.state != now.state or _processes(sent) != _processes(now):
        return True
    memory = min(MEMORY_MB, MEMORY_SHARE * now.memory_total_mb)
    if abs(now.memory_used_mb - sent.memory_used_mb) >= memory:
        return True
    power = max(POWER_FLOOR_W, POWER_SHARE * (sent.power_draw_w or 0.0))
    return (
        _reading_moved(sent.utilization_percent, now.utilization_percent, UTILIZATION_POINTS)
        or _reading_moved(sent.temperature_c, now.temperature_c, TEMPERATURE_C)
        or _reading_moved(sent.power_draw_w, now.power_draw_w, power)
    )


def _processes(gpu: GpuInfo) -> frozenset[tuple[int, bool]]:
    return frozenset((p.pid, p.managed) for p in gpu.processes)


def _reading_moved(sent: float | None, now: float | None, threshold: float) -> bool:
    """A reading that appeared or vanished moved; otherwise by at least `threshold`."""
    if sent is None or now is None:
        return (sent is None) != (now is None)
    return abs(now - sent) >= threshold
