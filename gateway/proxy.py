"""Forwarding one request to a replica of its model, and its answer back unchanged.

Streaming answers go to the client chunk by chunk as they arrive. A request is retried on
another replica (at most MAX_RETRIES times) only while nothing of the upstream's answer has
reached the client: connection refused or reset, or a 502/503 from the upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from gateway.activity import ActivityLog
from gateway.errors import GatewayError, unavailable
from gateway.follow import Routes
from gateway.metrics import Metrics
from gateway.router import Router
from gateway.scale import Scaler
from gateway.table import Model, Replica

log = logging.getLogger(__name__)
MAX_RETRIES = 2
RETRY_STATUS = frozenset({502, 503})
PASSED_HEADERS = ("Content-Type", "Content-Encoding")
SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}
CLIENT_GONE = 499  # nginx's code: the client closed the connection
UPSTREAM_ERRORS = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError)


class Failed(Exception):
    """This replica failed before any byte reached the client: try another."""


@dataclass
class Outcome:
    response: web.StreamResponse
    status: int
    error: str | None = None


class Proxy:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        routes: Routes,
        router: Router,
        scaler: Scaler,
        activity: ActivityLog,
        metrics: Metrics,
        keepalive_s: float = 5.0,
    ) -> None:
        self.session = session
        self.routes = routes
        self.router = router
        self.scaler = scaler
        self.activity = activity
        self.metrics = metrics
        self.keepalive_s = keepalive_s

    async def handle(
        self, request: web.Request, model: Model, body: bytes, stream: bool
    ) -> web.StreamResponse:
        name = model.name
        started = time.monotonic()
        self.activity.begin(name)
        in_flight = self.metrics.in_flight.labels(name)
        in_flight.inc()
        outcome: Outcome | None = None
        try:
            outcome = await self._serve(request, model, body, stream, started)
            return outcome.response
        except GatewayError as exc:
            outcome = Outcome(error_response(exc), exc.status, exc.code)
            return outcome.response
        finally:
            in_flight.dec()
            self.activity.finish(name)
            if outcome is not None:  # None: the client went away (cancelled)
                self.metrics.requests.labels(name, str(outcome.status)).inc()
                if outcome.error is not None:
                    self.metrics.errors.labels(name, outcome.error).inc()
                self.metrics.latency.labels(name).observe(time.monotonic() - started)

    async def _serve(
        self, request: web.Request, model: Model, body: bytes, stream: bool, started: float
    ) -> Outcome:
        table = self.routes.table
        early: web.StreamResponse | None = None
        if table is None or not table.routable(model.name):
            if stream:
                early = web.StreamResponse(status=200, headers=SSE_HEADERS)
                await early.prepare(request)
                try:
                    await self._wait_streaming(early, model)
                except GatewayError as exc:
                    await early.write(exc.sse())
                    await early.write_eof()
                    return Outcome(early, 200, exc.code)
            else:
                await self.scaler.ready(model)
        try:
            return await self._forward(request, model, body, stream, started, early)
        except GatewayError as exc:
            if early is None:
                raise
            await early.write(exc.sse())  # the SSE headers went out while the model loaded
            await early.write_eof()
            return Outcome(early, 200, exc.code)

    async def _forward(
        self,
        request: web.Request,
        model: Model,
        body: bytes,
        stream: bool,
        started: float,
        early: web.StreamResponse | None,
    ) -> Outcome:
        tried: list[str] = []
        while True:
            replica = self._choose(model, tried)
            tried.append(replica.endpoint)
            # The last try passes a 502/503 through: no replica is left to try, or no retry.
            last = len(tried) > MAX_RETRIES or not self._alternative(model, tried)
            try:
                return await self._attempt(request, replica, body, stream, started, early, last)
            except Failed as exc:
                log.info("model %s: %s failed (%s)", model.name, replica.endpoint, exc)
                if last:
                    raise GatewayError(
                        502, f"model {model.name!r}: the upstream failed: {exc}", "upstream_failed"
                    ) from None
                self.metrics.retries.labels(model.name).inc()

    def _alternative(self, model: Model, tried: list[str]) -> bool:
        table = self.routes.table
        replicas = table.routable(model.name) if table is not None else ()
        return self.router.choose(replicas, exclude=tried) is not None

    def _choose(self, model: Model, tried: list[str]) -> Replica:
        table = self.routes.table
        replicas = table.routable(model.name) if table is not None else ()
        replica = self.router.choose(replicas, exclude=tried)
        if replica is not None:
            return replica
        if tried:
            raise GatewayError(
                502, f"model {model.name!r}: every replica failed ({', '.join(tried)})",
                "upstream_failed",
            )  # fmt: skip
        if replicas:
            left = self.router.cooldown_left(replicas)
            raise unavailable(
                f"model {model.name!r}: every replica failed repeatedly and cools down for "
                f"{left:.1f} s", left or 1.0, code="cooling_down",
            )  # fmt: skip
        raise unavailable(f"model {model.name!r} has no healthy replica now", 5.0)

    async def _wait_streaming(self, response: web.StreamResponse, model: Model) -> None:
        async def keepalive() -> None:
            comment = f": loading {model.name}\n\n".encode()
            while True:
                await asyncio.sleep(self.keepalive_s)
                await response.write(comment)

        beat = asyncio.ensure_future(keepalive())
        try:
            await self.scaler.ready(model)
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionResetError):
                await beat

    async def _attempt(
        self,
        request: web.Request,
        replica: Replica,
        body: bytes,
        stream: bool,
        started: float,
        early: web.StreamResponse | None,
        last: bool,
    ) -> Outcome:
        endpoint = replica.endpoint
        headers = {"Content-Type": request.headers.get("Content-Type", "application/json")}
        for name in ("Accept", "Accept-Encoding"):
            if name in request.headers:
                headers[name] = request.headers[name]
        self.router.begin(endpoint)
        asked = time.monotonic()
        upstream: aiohttp.ClientResponse | None = None
        try:
            try:
                upstream = await self.session.post(
                    endpoint + request.path_qs, data=body, headers=headers
                )
            except UPSTREAM_ERRORS as exc:
                self.router.failed(endpoint)
                raise Failed(str(exc) or type(exc).__name__) from None
            if upstream.status in RETRY_STATUS and not last:
                self.router.failed(endpoint)
                raise Failed(f"HTTP {upstream.status}")
            self.router.succeeded(endpoint, time.monotonic() - asked)
            if stream and (upstream.status == 200 or early is not None):
                return await self._stream(request, upstream, replica, started, early)
            try:
                content = await upstream.read()
            except UPSTREAM_ERRORS as exc:
                self.router.failed(endpoint)
                raise Failed(f"reading the answer: {exc or type(exc).__name__}") from None
            passed = {k: upstream.headers[k] for k in PASSED_HEADERS if k in upstream.headers}
            answer = web.Response(status=upstream.status, body=content, headers=passed)
            error = None if upstream.status < 400 else f"upstream_{upstream.status}"
            return Outcome(answer, upstream.status, error)
        finally:
            self.router.end(endpoint)
            if upstream is not None:
                upstream.close()  # a no-op after a full read; cuts an unfinished one

    async def _stream(
        self,
        request: web.Request,
        upstream: aiohttp.ClientResponse,
        replica: Replica,
        started: float,
        early: web.StreamResponse | None,
    ) -> Outcome:
        if early is not None and upstream.status != 200:
            text = (await upstream.read()).decode(errors="replace")[:500]
            exc = GatewayError(
                502, f"model {replica.model!r}: upstream answered {upstream.status}: {text}",
                f"upstream_{upstream.status}",
            )  # fmt: skip
            await early.write(exc.sse())
            await early.write_eof()
            return Outcome(early, 200, exc.code)
        response = early
        if response is None:
            headers = dict(SSE_HEADERS)
            headers.update(
                (k, upstream.headers[k]) for k in PASSED_HEADERS if k in upstream.headers
            )
            response = web.StreamResponse(status=upstream.status, headers=headers)
            await response.prepare(request)
        first = True
        chunks = upstream.content.iter_any().__aiter__()
        while True:
            try:
                chunk = await anext(chunks)
            except StopAsyncIteration:
                break
            except UPSTREAM_ERRORS as exc:
                self.router.failed(replica.endpoint)
                error = GatewayError(
                    502, f"model {replica.model!r}: the upstream broke off the stream: "
                    f"{exc or type(exc).__name__}", "upstream_broke_off",
                )  # fmt: skip
                await response.write(error.sse())
                await response.write_eof()
                return Outcome(response, 200, error.code)
            if first:
                self.metrics.ttft.labels(replica.model).observe(time.monotonic() - started)
                first = False
            try:
                await response.write(chunk)
            except ConnectionResetError:
                return Outcome(response, CLIENT_GONE, "client_disconnected")
        await response.write_eof()
        return Outcome(response, 200)


def error_response(exc: GatewayError) -> web.Response:
    return web.Response(
        status=exc.status, body=exc.body(), content_type="application/json", headers=exc.headers()
    )
