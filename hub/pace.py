"""How often agents heartbeat: the whole hub stays near a target rate as the cluster grows.

Pure: the watcher calls `Pacer.update` every few seconds with the number of connected agents
and sends the new pace to every session when it changed. Hysteresis keeps a hub whose agents
come and go from re-pacing on every connect."""

from __future__ import annotations

import math
from dataclasses import dataclass

TELEMETRY_FLOOR_S = 60.0  # telemetry at least this often, never more often than heartbeats
RAISE_ABOVE = 1.25  # re-pace when the ideal interval is more than 25 % longer than the current
LOWER_BELOW = 0.5  # or less than half of it (or back at the minimum)


@dataclass(frozen=True)
class Pace:
    heartbeat_s: float
    telemetry_s: float


def ideal(agents: int, minimum: float, rate: float) -> float:
    """The interval that keeps `agents` at `rate` heartbeats a second, never below `minimum`."""
    return max(minimum, agents / rate)


def telemetry_interval(heartbeat_s: float) -> float:
    return max(TELEMETRY_FLOOR_S, heartbeat_s)


def pace_of(heartbeat_s: float) -> Pace:
    return Pace(heartbeat_s, telemetry_interval(heartbeat_s))


def describe(agents: int, minimum: float, rate: float) -> str:
    """What the settings give at `agents`, for --help."""
    beat = rounded(ideal(agents, minimum, rate), minimum)
    return (
        f"{agents:,} agents: a heartbeat every {beat:g} s ({agents / beat:.0f}/s), "
        f"telemetry at least every {telemetry_interval(beat):g} s"
    )


def rounded(interval: float, minimum: float) -> float:
    """Whole seconds, up (the hub-wide rate stays at or under the target); the minimum as is."""
    return minimum if interval <= minimum else float(math.ceil(interval))


class Pacer:
    """The hub's current heartbeat interval for its connected agents."""

    def __init__(self, minimum: float, rate: float) -> None:
        self.minimum = minimum
        self.rate = rate
        self.current = pace_of(minimum)

    def update(self, agents: int) -> Pace | None:
        """The new pace when `agents` moved the ideal interval far enough; else None."""
        best = ideal(agents, self.minimum, self.rate)
        now = self.current.heartbeat_s
        far = best > now * RAISE_ABOVE or best < now * LOWER_BELOW
        back = best == self.minimum and now != self.minimum
        if not (far or back):
            return None
        interval = rounded(best, self.minimum)
        if interval == now:
            return None
        self.current = pace_of(interval)
        return self.current
