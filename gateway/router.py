"""Replica choice: least in flight among healthy replicas that are not cooling down.

In flight counts this gateway's requests and the other gateways': the table's count over
every gateway less what this one last reported for the endpoint (`reported`). Pure
bookkeeping with an injected clock. A replica that failed FAILURES_TO_COOL times in a row is
left out for COOLDOWN_S; ties go to the table's order.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass

from gateway.table import Replica

FAILURES_TO_COOL = 3
COOLDOWN_S = 5.0
EWMA_WEIGHT = 0.2


@dataclass
class ReplicaStats:
    in_flight: int = 0
    failures: int = 0
    cool_until: float = 0.0
    response_ms: float | None = None


class Router:
    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        failures_to_cool: int = FAILURES_TO_COOL,
        cooldown_s: float = COOLDOWN_S,
        reported: Callable[[str], int] = lambda endpoint: 0,
    ) -> None:
        self.clock = clock
        self.reported = reported
        self.failures_to_cool = failures_to_cool
        self.cooldown_s = cooldown_s
        self._stats: dict[str, ReplicaStats] = {}

    def stats(self, endpoint: str) -> ReplicaStats:
        found = self._stats.get(endpoint)
        if found is None:
            found = self._stats[endpoint] = ReplicaStats()
        return found

    def cooling(self, endpoint: str) -> bool:
        found = self._stats.get(endpoint)
        return found is not None and found.cool_until > self.clock()

    def cooldown_left(self, replicas: Iterable[Replica]) -> float:
        """Seconds until the first of these replicas leaves its cooldown."""
        now = self.clock()
        left = [self.stats(r.endpoint).cool_until - now for r in replicas]
        return max(0.0, min(left, default=0.0))

    def choose(self, replicas: Iterable[Replica], exclude: Collection[str] = ()) -> Replica | None:
        best: Replica | None = None
        best_load = 0
        for replica in replicas:
            if not replica.routable or replica.endpoint in exclude:
                continue
            if self.cooling(replica.endpoint):
                continue
            load = self.cluster_in_flight(replica)
            if best is None or load < best_load:
                best, best_load = replica, load
        return best

    def others_in_flight(self, replica: Replica) -> int:
        """Requests other gateways have at this replica, from the table."""
        return max(0, replica.in_flight - self.reported(replica.endpoint))

    def cluster_in_flight(self, replica: Replica) -> int:
        return self.stats(replica.endpoint).in_flight + self.others_in_flight(replica)

    def begin(self, endpoint: str) -> None:
        self.stats(endpoint).in_flight += 1

    def end(self, endpoint: str) -> None:
        stats = self.stats(endpoint)
        stats.in_flight = max(0, stats.in_flight - 1)

    def succeeded(self, endpoint: str, response_s: float) -> None:
        stats = self.stats(endpoint)
        stats.failures = 0
        ms = response_s * 1000.0
        previous = stats.response_ms
        stats.response_ms = ms if previous is None else previous + EWMA_WEIGHT * (ms - previous)

    def failed(self, endpoint: str) -> None:
        stats = self.stats(endpoint)
        stats.failures += 1
        if stats.failures >= self.failures_to_cool:
            stats.cool_until = self.clock() + self.cooldown_s
            stats.failures = 0
