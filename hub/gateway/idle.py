"""Which models are idle: the gateways' request activity against each model's idle_ttl. Pure:
callers pass the time.

Each gateway reports, per model, its requests in flight (in all, and per replica endpoint)
and when its last request finished. The hub keeps, per model, its own last activity, which
only moves forward and outlives the reports: the newest finish any gateway reported, and
"now" whenever a gateway has a request in flight for it. A gateway's report counts for its
in-flight requests while it is fresh (the window); a gateway that went silent while it had
requests in flight (it crashed, or lost its link) is taken as still serving them for
GRACE_WINDOWS more windows, then forgotten. A model is idle when nothing is in flight and
the newest of (its last activity, the start of its deployment) is older than its idle_ttl:
the clock starts when the last request finished, not when it started, and a model nobody
asked for is stopped idle_ttl after it started.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

MAX_GATEWAYS = 256  # reporting at once; more is a misconfiguration, the oldest are dropped
MAX_MODELS = 16_384  # whose last activity is kept; beyond, the longest idle are forgotten
GRACE_WINDOWS = 2  # a silent gateway's requests in flight count this many windows more


@dataclass(frozen=True)
class Seen:
    """One gateway's (or every gateway's, summed) activity for one model: `last_finished` is,
    summed, the hub's last activity of the model; `replicas` endpoint -> requests in flight."""

    in_flight: int = 0
    last_finished: datetime | None = None
    replicas: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Candidate:
    """A model that could be stopped for idleness: it runs, ready, somewhere."""

    name: str
    idle_ttl_s: float
    started: datetime | None  # the newest start of its deployments (None: not known)


def _later(one: datetime | None, two: datetime) -> datetime:
    return two if one is None or two > one else one


class Activity:
    """The latest report of each gateway, with when it came, and each model's last activity."""

    def __init__(self, window_s: float) -> None:
        self.window = timedelta(seconds=window_s)
        self._reports: dict[str, tuple[datetime, Mapping[str, Seen]]] = {}
        self._last: dict[str, datetime] = {}

    def report(self, gateway: str, at: datetime, models: Mapping[str, Seen]) -> None:
        """A gateway's report, received at `at` (a finish reported later than `at` counts as
        `at`: a gateway's clock ahead of the hub's must not keep a model up)."""
        self._reports.pop(gateway, None)
        self._reports[gateway] = (at, dict(models))
        while len(self._reports) > MAX_GATEWAYS:
            del self._reports[next(iter(self._reports))]
        for model, seen in models.items():
            if seen.in_flight > 0:
                self._touch(model, at)
            if seen.last_finished is not None:
                self._touch(model, min(seen.last_finished, at))

    def _touch(self, model: str, at: datetime) -> None:
        self._last[model] = _later(self._last.get(model), at)
        if len(self._last) > MAX_MODELS:
            del self._last[min(self._last, key=self._last.__getitem__)]

    def _until(self, at: datetime, models: Mapping[str, Seen]) -> datetime:
        """Until when a report received at `at` counts."""
        if any(seen.in_flight > 0 for seen in models.values()):
            return at + self.window * (1 + GRACE_WINDOWS)
        return at + self.window

    def _current(self, now: datetime) -> dict[str, tuple[datetime, Mapping[str, Seen]]]:
        """The reports that still count; the others are forgotten (their requests in flight
        counting as activity until the end of their grace)."""
        for name, (at, models) in list(self._reports.items()):
            until = self._until(at, models)
            if now > until:
                for model, seen in models.items():
                    if seen.in_flight > 0:
                        self._touch(model, until)
                del self._reports[name]
        return dict(self._reports)

    def gateways(self, now: datetime) -> list[str]:
        """The gateways that reported within the window."""
        current = self._current(now)
        return sorted(name for name, (at, _) in current.items() if now - at <= self.window)

    def seen(self, now: datetime) -> dict[str, Seen]:
        """Per model, the requests in flight over every gateway that still counts, and the
        model's last activity (now, while a request is in flight)."""
        found: dict[str, Seen] = {}
        for at, models in self._current(now).values():
            for model, seen in models.items():
                if seen.in_flight > 0:
                    self._touch(model, min(now, self._until(at, models)))
                before = found.get(model, Seen())
                found[model] = Seen(before.in_flight + seen.in_flight)
        for model, last in self._last.items():
            found[model] = Seen(found.get(model, Seen()).in_flight, last)
        return found

    def replicas(self, now: datetime) -> dict[str, int]:
        """Endpoint -> requests in flight to it, summed over the gateways that reported within
        the window."""
        found: dict[str, int] = {}
        current = self._current(now)
        for at, models in current.values():
            if now - at > self.window:
                continue
            for seen in models.values():
                for endpoint, count in seen.replicas.items():
                    found[endpoint] = found.get(endpoint, 0) + count
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
