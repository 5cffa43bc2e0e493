"""Request activity per model, reported to the hub (which alone decides idle stops).

Reported every interval the hub asks for, and at once when a model goes from nothing in
flight to one request, so the hub never stops a model that just got a request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.hub import Activity, Hub, HubUnavailable

log = logging.getLogger(__name__)
DEFAULT_INTERVAL_S = 2.0


@dataclass
class ModelCounts:
    in_flight: int = 0
    requests: int = 0
    last_finished: float | None = None
    replicas: dict[str, int] = field(default_factory=dict)  # endpoint: requests sent there now


class ActivityLog:
    def __init__(self, wall: Callable[[], float] = time.time) -> None:
        self.wall = wall
        self.models: dict[str, ModelCounts] = {}
        self.woken = asyncio.Event()
        self._reported: dict[str, int] = {}

    def _counts(self, model: str) -> ModelCounts:
        found = self.models.get(model)
        if found is None:
            found = self.models[model] = ModelCounts()
        return found

    def begin(self, model: str) -> None:
        counts = self._counts(model)
        counts.in_flight += 1
        counts.requests += 1
        if counts.in_flight == 1:
            self.woken.set()

    def finish(self, model: str) -> None:
        counts = self._counts(model)
        counts.in_flight = max(0, counts.in_flight - 1)
        counts.last_finished = self.wall()

    def sent(self, model: str, endpoint: str) -> None:
        replicas = self._counts(model).replicas
        replicas[endpoint] = replicas.get(endpoint, 0) + 1

    def returned(self, model: str, endpoint: str) -> None:
        replicas = self._counts(model).replicas
        replicas[endpoint] = max(0, replicas.get(endpoint, 0) - 1)

    def snapshot(self) -> list[Activity]:
        return [
            Activity(name, c.in_flight, c.requests, c.last_finished, dict(c.replicas))
            for name, c in sorted(self.models.items())
        ]

    def delivered(self, report: list[Activity]) -> None:
        """The hub got this report: its table's in-flight counts include these."""
        for item in report:
            self._reported.update(item.replicas)
            replicas = self._counts(item.model).replicas
            for endpoint, count in item.replicas.items():
                if count == 0 and replicas.get(endpoint) == 0:  # the hub knows: forget it
                    del replicas[endpoint]
                    del self._reported[endpoint]

    def reported(self, endpoint: str) -> int:
        """What the hub last got from this gateway for the endpoint."""
        return self._reported.get(endpoint, 0)


async def report_loop(activity: ActivityLog, hub: Hub, stop: asyncio.Event) -> None:
    interval = DEFAULT_INTERVAL_S
    failing = False
    while not stop.is_set():
        activity.woken.clear()
        try:
            report = activity.snapshot()
            answer = await hub.report_activity(report)
            activity.delivered(report)
            interval = answer if answer > 0 else DEFAULT_INTERVAL_S
            failing = False
        except HubUnavailable as exc:
            if not failing:
                log.warning("cannot report activity to the hub: %s", exc)
            failing = True
        waits = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(activity.woken.wait())}
        _, pending = await asyncio.wait(waits, timeout=interval, return_when="FIRST_COMPLETED")
        for task in pending:
            task.cancel()
