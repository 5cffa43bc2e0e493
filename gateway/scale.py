"""Scale from zero: a request for a defined model with no healthy replica asks the hub to
start it and waits for the table to show one.

Concurrent requests for one model share one EnsureModel call; each waits at most the
model's load_timeout_s, and at most max_queue requests wait per model. Refusals come before
anything is sent to the client: `starting` is called only once the hub said it starts the
model (a streaming request opens its SSE response then). While requests wait, the loading
replica is probed (gateway/warm.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from gateway.errors import GatewayError, unavailable
from gateway.follow import Routes
from gateway.hub import Ensured, Hub, HubRefused, HubUnavailable
from gateway.metrics import Metrics
from gateway.table import Model
from gateway.warm import PROBED_STATES, Warm

log = logging.getLogger(__name__)
DEFAULT_MAX_QUEUE = 64
RETRY_AFTER_S = 10.0
Starting = Callable[[], Awaitable[None]]


class Scaler:
    def __init__(
        self, routes: Routes, hub: Hub | None, metrics: Metrics, warm: Warm,
        max_queue: int = DEFAULT_MAX_QUEUE,
    ) -> None:  # fmt: skip
        self.routes = routes
        self.hub = hub
        self.warm = warm
        self.metrics = metrics
        self.max_queue = max_queue
        self._starts: dict[str, asyncio.Task[Ensured]] = {}
        self.waiting: dict[str, int] = {}

    def _start(self, hub: Hub, model: Model) -> asyncio.Task[Ensured]:
        task = self._starts.get(model.name)
        if task is None:
            task = asyncio.ensure_future(self._ensure(hub, model))
            self._starts[model.name] = task
            task.add_done_callback(lambda t: self._started(model.name, t))
        return task

    def _started(self, name: str, task: asyncio.Task[Ensured]) -> None:
        if self._starts.get(name) is task:
            del self._starts[name]
        if not task.cancelled():
            task.exception()  # retrieved here: every waiter may have given up already

    async def _ensure(self, hub: Hub, model: Model) -> Ensured:
        ensured = await hub.ensure_model(model.name)
        if ensured.state != "ready":
            self.metrics.cold_starts.labels(model.name).inc()
        where = f" on {', '.join(ensured.nodes)}" if ensured.nodes else ""
        log.info("model %s: hub says %s%s", model.name, ensured.state, where)
        return ensured

    async def ready(self, model: Model, starting: Starting | None = None) -> None:
        """Return once a replica of `model` is routable, else GatewayError."""
        table = self.routes.table
        if table is not None and self.warm.routable(table, model.name):
            return
        if self.hub is None:
            raise unavailable(
                f"model {model.name!r} has no endpoint (static --routes): add one to the file",
                RETRY_AFTER_S,
            )
        if self.waiting.get(model.name, 0) >= self.max_queue:
            raise unavailable(
                f"model {model.name!r} is loading and {self.max_queue} requests already wait "
                "for it (--max-queue): retry later", RETRY_AFTER_S, code="queue_full",
            )  # fmt: skip
        self.waiting[model.name] = self.waiting.get(model.name, 0) + 1
        queued = self.metrics.queued.labels(model.name)
        queued.inc()
        try:
            await asyncio.wait_for(
                self._wait(self.hub, model, starting), timeout=model.load_timeout_s
            )
        except TimeoutError:
            raise unavailable(self._late(model), RETRY_AFTER_S, code="load_timeout") from None
        finally:
            queued.dec()
            self.waiting[model.name] -= 1
            if not self.waiting[model.name]:
                await self.warm.stop(model.name)

    async def _wait(self, hub: Hub, model: Model, starting: Starting | None) -> None:
        try:
            ensured = await asyncio.shield(self._start(hub, model))
        except HubRefused as exc:
            raise unavailable(
                f"model {model.name!r}: {exc}", RETRY_AFTER_S, "hub_refused"
            ) from None
        except HubUnavailable as exc:
            raise unavailable(
                f"cannot ask the hub to start model {model.name!r}: {exc}", RETRY_AFTER_S,
                code="hub_unavailable",
            ) from None  # fmt: skip
        table = self.routes.table
        asked_at = table.generation if table is not None else 0
        if starting is not None and ensured.state != "ready":
            await starting()
        while True:
            change = self.routes.next_change()
            table = self.routes.table
            if table is not None:
                if self.warm.routable(table, model.name):
                    return
                current = table.lookup(model.name)
                if current is None or current.name != model.name:
                    raise GatewayError(
                        404, f"model {model.name!r} is no longer defined", "model_not_found"
                    )
                if current.state == "failed" and table.generation > asked_at:
                    raise unavailable(
                        f"model {model.name!r} failed to start: {current.message or 'no reason'}",
                        RETRY_AFTER_S, code="load_failed",
                    )  # fmt: skip
                if any(r.endpoint and r.state in PROBED_STATES
                       for r in table.replicas_of(model.name)):  # fmt: skip
                    self.warm.probe(model)
            await change.wait()

    def _late(self, model: Model) -> str:
        table = self.routes.table
        current = table.lookup(model.name) if table is not None else None
        state = current.state if current is not None else "unknown"
        detail = f": {current.message}" if current is not None and current.message else ""
        return (
            f"model {model.name!r} did not become ready within its load timeout "
            f"({model.load_timeout_s:g} s); the table says {state}{detail}"
        )
