"""Which models are idle: the gateways' request activity against each model's idle_ttl. Pure:
callers pass the time.

Each gateway reports, per model, its requests in flight and when its last request finished.
A model is idle when no gateway that reported within the window has a request in flight, and
the newest of (the last finish any of them reported, the start of the model's deployment)
is older than its idle_ttl: the clock starts when the last request finished, not when it
started, and a model nobody asked for is stopped idle_ttl after it started. Reports of a
gateway that stopped reporting are dropped after the window.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

MAX_GATEWAYS = 256  # reporting at once; more is a misconfiguration, the oldest are dropped


@dataclass(frozen=True)
class Seen:
    """One gateway's (or every gateway's, summed) activity for one model."""

    in_flight: int = 0
    last_finished: datetime | None = None


@dataclass(frozen=True)
class Candidate:
    """A model that could be stopped for idleness: it runs, ready, somewhere."""

    name: str
    idle_ttl_s: float
    started: datetime | None  # the newest start of its deployments (None: not known)


class Activity:
    """The latest report of each gateway, with when it came."""

    def __init__(self, window_s: float) -> None:
        self.window = timedelta(seconds=window_s)
        self._reports: dict[str, tuple[datetime, Mapping[str, Seen]]] = {}

    def report(self, gateway: str, at: datetime, models: Mapping[str, Seen]) -> None:
        self._reports.pop(gateway, None)
        self._reports[gateway] = (at, dict(models))
        while len(self._reports) > MAX_GATEWAYS:
            del self._reports[next(iter(self._reports))]

    def gateways(self, now: datetime) -> list[str]:
        """The gateways that reported within the window (the others are forgotten)."""
        for name, (at, _) in list(self._reports.items()):
            if now - at > self.window:
                del self._reports[name]
        return sorted(self._reports)

    def seen(self, now: datetime) -> dict[str, Seen]:
        """Per model, the requests in flight over every current gateway and the newest finish
        (a finish reported in the future counts as now: a gateway's clock ahead of the hub's
        must not keep a model up)."""
        found: dict[str, Seen] = {}
        for name in self.gateways(now):
            for model, seen in self._reports[name][1].items():
                before = found.get(model, Seen())
                finished = seen.last_finished
                if finished is not None and finished > now:
                    finished = now
                newest = max((t for t in (before.last_finished, finished) if t is not None),
                             default=None)  # fmt: skip
                found[model] = Seen(before.in_flight + seen.in_flight, newest)
        return found


def idle(candidates: Sequence[Candidate], seen: Mapping[str, Seen], now: datetime) -> list[str]:
    """The names of the candidates to stop now, by name."""
    found = []
    for model in candidates:
        activity = seen.get(model.name, Seen())
        if activity.in_flight > 0:
            continue
        moments = [t for t in (activity.last_finished, model.started) if t is not None]
        if not moments:
            continue  # neither a request nor a start known: no clock to count from
        if now - max(moments) >= timedelta(seconds=model.idle_ttl_s):
            found.append(model.name)
    return sorted(found)
