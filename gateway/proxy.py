"""Forwarding one request to a replica of its model, and its answer back unchanged.

Streaming answers go to the client SSE event by event as they arrive (gateway/sse.py). A
request is retried on another replica (at most MAX_RETRIES times) only while nothing of the
upstream's answer has reached the client: connection refused or reset, a 502/503 from the
upstream, or its replica left the table. When the last one failed and the table no longer
routes the model (an idle stop raced the request), the request waits once for a fresh start.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from gateway.activity import ActivityLog
from gateway.bound import Bindings, ReplicaGone
from gateway.errors import GatewayError, unavailable
from gateway.follow import Routes
from gateway.loading import SSE_HEADERS, Loading
from gateway.metrics import Metrics
from gateway.router import Router
from gateway.scale import Scaler
from gateway.sse import WholeEvents
from gateway.table import Model, Replica

log = logging.getLogger(__name__)
MAX_RETRIES = 2
RETRY_STATUS = frozenset({502, 503})
PASSED_HEADERS = ("Content-Type", "Content-Encoding")
CLIENT_GONE = 499  # nginx's code: the client closed the connection
UPSTREAM_ERRORS = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError)


class Failed(Exception):
    """This replica failed before any byte reached the client: try another."""


@dataclass
class Call:
    request: web.Request
    model: Model
    body: bytes
    stream: bool
    path: str  # what goes upstream: the checked raw path and query
    started: float
    loading: Loading | None = None

    @property
    def early(self) -> web.StreamResponse | None:
        """The SSE response opened while the model loaded, if it was."""
        return self.loading.response if self.loading is not None else None


@dataclass
class Outcome:
    response: web.StreamResponse
    status: int
    error: str | None = None


@dataclass
class Sent:
    """What of one attempt reached the client."""

    response: web.StreamResponse | None = None
    started: bool = False  # a byte of the upstream's answer


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
        self.warm = scaler.warm
        self.activity = activity
        self.metrics = metrics
        self.keepalive_s = keepalive_s
        self.bindings = Bindings(routes)

    async def handle(
        self, request: web.Request, model: Model, body: bytes, stream: bool, path: str
    ) -> web.StreamResponse:
        name = model.name
        started = time.monotonic()
        self.activity.begin(name)
        in_flight = self.metrics.in_flight.labels(name)
        in_flight.inc()
        outcome: Outcome | None = None
        call = Call(request, model, body, stream, path, started)
        try:
            outcome = await self._serve(call)
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

    async def _serve(self, call: Call) -> Outcome:
        if call.stream:
            call.loading = Loading(call.request, call.model.name, self.keepalive_s)
        try:
            if not self._routable(call.model):
                await self._ready(call)
            return await self._forward(call)
        except GatewayError as exc:
            early = call.early
            if early is None:
                raise
            await early.write(exc.sse())  # the SSE headers went out while the model loaded
            await early.write_eof()
            return Outcome(early, 200, exc.code)

    def _routable(self, model: Model) -> tuple[Replica, ...]:
        table = self.routes.table
        return self.warm.routable(table, model.name) if table is not None else ()

    async def _ready(self, call: Call) -> None:
        if call.loading is None:
            await self.scaler.ready(call.model)
            return
        try:
            await self.scaler.ready(call.model, call.loading.start)
        finally:
            await call.loading.quiet()

    async def _forward(self, call: Call) -> Outcome:
        model = call.model
        tried: list[str] = []
        restarts = 1  # an idle stop that raced this request: one wait for a fresh start
        while True:
            replica = self.router.choose(self._routable(model), exclude=tried)
            if replica is None:
                if not tried:
                    raise self._none_left(model)
                failure = f"every replica failed ({', '.join(tried)})"
            else:
                tried.append(replica.endpoint)
                # The last try passes a 502/503 through: no replica is left, or no retry.
                last = (
                    len(tried) > MAX_RETRIES
                    or self.router.choose(self._routable(model), exclude=tried) is None
                )
                try:
                    return await self._attempt(call, replica, last)
                except Failed as exc:
                    log.info("model %s: %s failed (%s)", model.name, replica.endpoint, exc)
                    if not last:
                        self.metrics.retries.labels(model.name).inc()
                        continue
                    failure = f"the upstream failed: {exc}"
            if restarts and not self._routable(model):
                # Stopped (or being stopped) under this request, before any byte reached
                # the client: wait for a fresh start like a new request.
                log.info("model %s: no longer routable; waiting for a fresh start", model.name)
                restarts -= 1
                tried = []
                await self._ready(call)
                continue
            raise GatewayError(502, f"model {model.name!r}: {failure}", "upstream_failed")

    def _none_left(self, model: Model) -> GatewayError:
        replicas = self._routable(model)
        if replicas:
            left = self.router.cooldown_left(replicas)
            return unavailable(
                f"model {model.name!r}: every replica failed repeatedly and cools down for "
                f"{left:.1f} s", left or 1.0, code="cooling_down",
            )  # fmt: skip
        return unavailable(f"model {model.name!r} has no healthy replica now", 5.0)

    async def _attempt(self, call: Call, replica: Replica, last: bool) -> Outcome:
        endpoint = replica.endpoint
        sent = Sent(call.early)
        self.router.begin(endpoint)
        self.activity.sent(replica.model, endpoint)
        try:
            with self.bindings.bound(endpoint):
                return await self._exchange(call, replica, last, sent)
        except ReplicaGone as exc:
            if not sent.started or sent.response is None:
                raise Failed(str(exc)) from None
            error = GatewayError(
                502, f"model {replica.model!r}: {exc} during the answer", "replica_gone"
            )
            with contextlib.suppress(ConnectionResetError):
                await sent.response.write(error.sse())
                await sent.response.write_eof()
            return Outcome(sent.response, 200, error.code)
        finally:
            self.router.end(endpoint)
            self.activity.returned(replica.model, endpoint)

    async def _exchange(self, call: Call, replica: Replica, last: bool, sent: Sent) -> Outcome:
        endpoint = replica.endpoint
        request = call.request
        headers = {"Content-Type": request.headers.get("Content-Type", "application/json")}
        for name in ("Accept", "Accept-Encoding"):
            if name in request.headers:
                headers[name] = request.headers[name]
        asked = time.monotonic()
        upstream: aiohttp.ClientResponse | None = None
        try:
            try:
                upstream = await self.session.post(
                    endpoint + call.path, data=call.body, headers=headers
                )
            except UPSTREAM_ERRORS as exc:
                self.router.failed(endpoint)
                raise Failed(str(exc) or type(exc).__name__) from None
            if upstream.status in RETRY_STATUS and not last:
                self.router.failed(endpoint)
                raise Failed(f"HTTP {upstream.status}")
            self.router.succeeded(endpoint, time.monotonic() - asked)
            if call.stream and (upstream.status == 200 or sent.response is not None):
                return await self._stream(call, upstream, replica, sent)
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
            if upstream is not None:
                upstream.close()  # a no-op after a full read; cuts an unfinished one

    async def _stream(
        self, call: Call, upstream: aiohttp.ClientResponse, replica: Replica, sent: Sent
    ) -> Outcome:
        response = sent.response
        if response is not None and upstream.status != 200:
            text = (await upstream.read()).decode(errors="replace")[:500]
            exc = GatewayError(
                502, f"model {replica.model!r}: upstream answered {upstream.status}: {text}",
                f"upstream_{upstream.status}",
            )  # fmt: skip
            await response.write(exc.sse())
            await response.write_eof()
            return Outcome(response, 200, exc.code)
        if response is None:
            headers = dict(SSE_HEADERS)
            headers.update(
                (k, upstream.headers[k]) for k in PASSED_HEADERS if k in upstream.headers
            )
            response = sent.response = web.StreamResponse(status=upstream.status, headers=headers)
            sent.started = True
            await response.prepare(call.request)
        first = True
        events = WholeEvents()  # a break-off drops a half-read event: the error event is whole
        chunks = upstream.content.iter_any().__aiter__()
        ended = False
        while not ended:
            try:
                whole = events.feed(await anext(chunks))
            except StopAsyncIteration:
                whole, ended = events.rest(), True  # a clean end: the rest goes out as it is
            except UPSTREAM_ERRORS as exc:
                self.router.failed(replica.endpoint)
                error = GatewayError(
                    502, f"model {replica.model!r}: the upstream broke off the stream: "
                    f"{exc or type(exc).__name__}", "upstream_broke_off",
                )  # fmt: skip
                await response.write(error.sse())
                await response.write_eof()
                return Outcome(response, 200, error.code)
            if not whole:
                continue
            if first:
                self.metrics.ttft.labels(replica.model).observe(time.monotonic() - call.started)
                first = False
            sent.started = True
            try:
                await response.write(whole)
            except ConnectionResetError:
                return Outcome(response, CLIENT_GONE, "client_disconnected")
        await response.write_eof()
        return Outcome(response, 200)


def error_response(exc: GatewayError) -> web.Response:
    return web.Response(
        status=exc.status, body=exc.body(), content_type="application/json", headers=exc.headers()
    )
