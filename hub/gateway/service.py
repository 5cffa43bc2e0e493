"""The Gateway service: what gpufleet-gateway processes call (role gateway).

WatchRoutes streams the whole routing table at once and again whenever it changes: while
anyone watches, one task recomputes it every TICK_S (and at once after an API key changed or
a start was asked for) and publishes it only when it differs, with the next generation; every
watcher gets the newest. EnsureModel and ReportActivity are the scaler's
(`hub.gateway.scaler`); GpuStats is the Hub service's ListGpus, every page.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import sqlalchemy.exc

from gpufleet.v1 import gateway_pb2, gateway_pb2_grpc, hub_pb2
from hub.api import HubService
from hub.gateway import convert, routes
from hub.gateway.observe import Observer
from hub.gateway.routes import RouteTable
from hub.gateway.scaler import STOP, Scaler
from hub.models.deployments import Refused
from hub.store import Database
from hub.store.db import describe
from hub.store.keys import KeyStore

log = logging.getLogger(__name__)
Context = grpc.aio.ServicerContext[Any, Any]
TICK_S = 0.3
PAUSE_S = 1.0  # after a failed computation, before the next
MAX_NAME = 253
MAX_MODELS = 4096  # models in one activity report
MAX_PAGES = 1000  # of ListGpus for GpuStats


class Publisher:
    """The newest table, recomputed only while someone watches."""

    def __init__(self, compute: Callable[[], Awaitable[RouteTable]], tick_s: float,
                 first: int | None = None) -> None:  # fmt: skip
        self.compute = compute
        self.tick_s = tick_s
        self.pause_s = min(PAUSE_S, tick_s * 3)
        # From the clock (ms): a restarted hub's generations still exceed its last ones (it
        # sends a few tables a second at most).
        self.generation = time.time_ns() // 1_000_000 if first is None else first
        self.table: RouteTable | None = None
        self._changed = asyncio.Condition()
        self._poke = asyncio.Event()
        self._watchers = 0
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def poke(self) -> None:
        """Recompute now, not at the next tick."""
        self._poke.set()

    async def _loop(self) -> None:
        failing = ""  # said once while the database fails the same way
        while True:
            self._poke.clear()
            try:
                table = await self.compute()
            except sqlalchemy.exc.SQLAlchemyError as exc:  # the table stays as it was
                if describe(exc) != failing:
                    log.warning("gateway routes: cannot read the database: %s", describe(exc))
                failing = describe(exc)
            except Exception:  # a bug: the table stays as it was, and the loop goes on
                log.exception("gateway routes: cannot compute the table")
                await asyncio.sleep(self.pause_s)
            else:
                failing = ""
                if table != self.table:
                    async with self._changed:
                        self.table = table
                        self.generation += 1
                        self._changed.notify_all()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), self.tick_s)

    async def watch(self) -> AsyncIterator[tuple[int, RouteTable]]:
        """Each newest table (generation, table), the current one first."""
        self._watchers += 1
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop(), name="gateway-routes")
        sent = -1
        try:
            while True:
                async with self._changed:
                    await self._changed.wait_for(functools.partial(self._newer, sent))
                    if self._closed:
                        return
                    sent, table = self.generation, self.table
                assert table is not None
                yield sent, table
        finally:
            self._watchers -= 1
            if not self._watchers and self._task is not None:
                self._task.cancel()
                self._task = None
                self.table = None  # the next watcher starts from a fresh table

    def _newer(self, sent: int) -> bool:
        return self._closed or (self.table is not None and self.generation > sent)

    async def close(self) -> None:
        """End every watch (the hub is stopping)."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        async with self._changed:
            self._changed.notify_all()


def _name(value: str) -> bool:
    return bool(value) and len(value) <= MAX_NAME and value.isprintable()


class GatewayService(gateway_pb2_grpc.GatewayServicer):  # type: ignore[misc]
    def __init__(self, db: Database, observer: Observer, scaler: Scaler, hub: HubService,
                 tick_s: float = TICK_S) -> None:  # fmt: skip
        self.db = db
        self.observer = observer
        self.scaler = scaler
        self.hub = hub
        self.keys = KeyStore(db.engine)
        self.routes = Publisher(self.table, tick_s)
        scaler.changed = self.routes.poke

    def keys_changed(self) -> None:
        """An API key was created or revoked: the next table goes out at once."""
        self.routes.poke()

    async def table(self) -> RouteTable:
        snap = await self.observer.snapshot()
        keys = await self.db.call(self.keys.valid)
        return routes.build(snap.models, snap.errors, snap.found, snap.serving,
                            self.scaler.starting(), self.scaler.failures, keys,
                            self.scaler.in_flight(STOP),
                            self.scaler.replica_in_flight())  # fmt: skip

    async def WatchRoutes(
        self, request: gateway_pb2.WatchRoutesRequest, context: Context
    ) -> AsyncIterator[gateway_pb2.RouteTable]:
        self.scaler.activate()
        who = request.gateway[:64] if _name(request.gateway) else "a gateway"
        log.info("%s follows the routes", who)
        try:
            async for generation, table in self.routes.watch():
                yield convert.table(table, generation)
        finally:
            log.info("%s stopped following the routes", who)

    async def EnsureModel(
        self, request: gateway_pb2.EnsureModelRequest, context: Context
    ) -> gateway_pb2.EnsureModelResponse:
        self.scaler.activate()
        if not _name(request.name):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"model name {request.name[:64]!r} is not one: give a model's name, alias or "
                "served name (`hubctl models` lists them)",
            )
        try:
            found = await self.scaler.ensure(request.name)
        except Refused as exc:
            await context.abort(exc.code, str(exc))
            raise
        except sqlalchemy.exc.SQLAlchemyError as exc:
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                f"the hub cannot read its database now: {describe(exc)}",
            )
            raise
        self.routes.poke()
        return gateway_pb2.EnsureModelResponse(
            state=found.state, operation_id=found.operation_id, nodes=list(found.nodes),
            message=found.message,
        )  # fmt: skip

    async def ReportActivity(
        self, request: gateway_pb2.ActivityReport, context: Context
    ) -> gateway_pb2.ActivityAck:
        self.scaler.activate()
        if not _name(request.gateway):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "name the gateway: a report needs its gateway's name")  # fmt: skip
        if len(request.models) > MAX_MODELS:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"{len(request.models)} models in one report: at most "
                                f"{MAX_MODELS}")  # fmt: skip
        try:
            models = convert.activity(request)
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise
        interval = self.scaler.report(request.gateway, models)
        return gateway_pb2.ActivityAck(interval_s=interval)

    async def GpuStats(
        self, request: gateway_pb2.GpuStatsRequest, context: Context
    ) -> hub_pb2.ListGpusResponse:
        found = hub_pb2.ListGpusResponse()
        token = ""
        for _ in range(MAX_PAGES):
            page = await self.hub.ListGpus(hub_pb2.ListGpusRequest(page_token=token), context)
            found.gpus.extend(page.gpus)
            token = page.next_page_token
            if not token:
                break
        return found
