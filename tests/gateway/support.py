"""Stand-ins at the gateway's process edges: OpenAI-shaped upstream servers on loopback and
a hub that answers the Gateway service's calls from the test. The gateway itself runs for
real (serve(), port 0) and is talked to over HTTP."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import openai
from aiohttp import web

from gateway.app import Settings
from gateway.follow import Routes
from gateway.hub import Activity, Ensured, GpuRow, Hub
from gateway.serve import ServeOptions, serve
from gateway.table import Model, Replica, Table


def dead_endpoint() -> str:
    """An address where nothing listens: connection refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def chunk(text: str, model: str) -> bytes:
    data = {
        "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": model,
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
    }  # fmt: skip
    return b"data: " + json.dumps(data).encode() + b"\n\n"


@dataclass
class Upstream:
    """An OpenAI-shaped model server. `status` forces an error status; `release` holds a slow
    stream after its first chunk (and a slow non-streaming answer) until set; `break_off`
    cuts the connection there instead. GET /v1/models lists `listed`."""

    name: str = "up"
    status: int = 200
    slow: bool = False
    break_off: bool = False
    release: asyncio.Event = field(default_factory=asyncio.Event)
    bodies: list[dict[str, object]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""
    listed: tuple[str, ...] = ("tiny",)
    probes: int = 0

    async def models(self, request: web.Request) -> web.Response:
        self.probes += 1
        data = [{"id": name, "object": "model", "owned_by": "x"} for name in self.listed]
        return web.json_response({"object": "list", "data": data})

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.bodies.append(body)
        self.paths.append(request.path)
        self.arrived.set()
        if self.status != 200:
            error = {"error": {"message": f"{self.name} fails", "type": "x", "code": None}}
            return web.json_response(error, status=self.status)
        model = str(body.get("model"))
        try:
            if body.get("stream"):
                return await self._stream(request, model)
            if self.slow:
                await self.release.wait()
                if self.break_off and request.transport is not None:
                    request.transport.abort()  # dies before answering
            return web.json_response(self._answer(request.path, model))
        except asyncio.CancelledError:
            self.disconnected.set()
            raise

    def _answer(self, path: str, model: str) -> dict[str, object]:
        if path == "/v1/embeddings":
            vector = {"object": "embedding", "index": 0, "embedding": [0.5, 0.25]}
            usage = {"prompt_tokens": 1, "total_tokens": 1}
            return {"object": "list", "model": model, "usage": usage, "data": [vector]}
        if path == "/v1/completions":
            return {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": model,
                    "choices": [{"index": 0, "text": f"from {self.name}", "finish_reason":
                                 "stop", "logprobs": None}]}  # fmt: skip
        return {
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": f"from {self.name}"}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
        }  # fmt: skip

    async def _stream(self, request: web.Request, model: str) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            await response.write(chunk("first", model))
            if self.break_off and request.transport is not None:
                request.transport.abort()  # dies mid-stream
                return response
            if self.slow:
                await self.release.wait()
            for word in (" second", f" from {self.name}"):
                await response.write(chunk(word, model))
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except (asyncio.CancelledError, ConnectionResetError):
            self.disconnected.set()
            raise
        self.finished.set()
        return response


async def get_json(url: str, headers: dict[str, str] | None = None
                   ) -> tuple[int, Any]:  # fmt: skip
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers or {}) as reply:
        return reply.status, await reply.json(content_type=None)


async def post(
    url: str, body: bytes | Mapping[str, object], headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with aiohttp.ClientSession() as http, http.post(url, data=data, headers=headers or {}
                                                          ) as reply:  # fmt: skip
        return reply.status, dict(reply.headers), await reply.json(content_type=None)


@asynccontextmanager
async def upstream(server: Upstream) -> AsyncIterator[Upstream]:
    app = web.Application()
    app.router.add_get("/v1/models", server.models)
    app.router.add_post("/v1/{tail:.+}", server.handle)
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    server.url = f"http://{host}:{port}"
    try:
        yield server
    finally:
        server.release.set()
        await runner.cleanup()


def table(*models: tuple[Model, list[str]], keys: tuple[object, ...] = (), generation: int = 1
          ) -> Table:  # fmt: skip
    replicas = [
        Replica(model.name, f"node{i}", endpoint, True)
        for model, endpoints in models
        for i, endpoint in enumerate(endpoints)
    ]
    return Table(generation, tuple(m for m, _ in models), tuple(replicas), keys=keys)  # type: ignore[arg-type]


class FakeHub(Hub):
    """The hub at the process edge: tables pushed by the test, EnsureModel recorded."""

    def __init__(self, first: Table | None = None, ensured: Ensured | Exception | None = None
                 ) -> None:  # fmt: skip
        self.tables: asyncio.Queue[Table | Exception] = asyncio.Queue()
        if first is not None:
            self.tables.put_nowait(first)
        self.ensured = ensured or Ensured("starting", ("node0",))
        self.ensure_calls: list[str] = []
        self.ensure_called = asyncio.Event()
        self.watching = asyncio.Event()
        self.ensure_gate = asyncio.Event()
        self.ensure_gate.set()
        self.reports: list[list[Activity]] = []
        self.reported = asyncio.Event()
        self.interval_s = 30.0
        self.gpus: list[GpuRow] = []
        self.watches = 0

    async def watch_routes(self) -> AsyncIterator[Table]:
        self.watches += 1
        self.watching.set()
        while True:
            item = await self.tables.get()
            if isinstance(item, Exception):
                raise item
            yield item

    async def ensure_model(self, name: str) -> Ensured:
        self.ensure_calls.append(name)
        self.ensure_called.set()
        await self.ensure_gate.wait()
        if isinstance(self.ensured, Exception):
            raise self.ensured
        return self.ensured

    async def report_activity(self, models: list[Activity]) -> float:  # type: ignore[override]
        self.reports.append(list(models))
        self.reported.set()
        return self.interval_s

    async def gpu_stats(self) -> list[GpuRow]:
        return self.gpus

    async def close(self) -> None:
        return None


@dataclass
class Running:
    url: str
    routes: Routes
    stop: asyncio.Event
    clients: list[openai.AsyncOpenAI] = field(default_factory=list)

    def client(self, key: str = "none") -> openai.AsyncOpenAI:
        """The official client, closed with the gateway."""
        api = openai.AsyncOpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0)
        self.clients.append(api)
        return api


@asynccontextmanager
async def gateway(
    first: Table | None,
    hub: Hub | None = None,
    settings: Settings | None = None,
    max_queue: int = 64,
    keepalive_s: float = 5.0,
) -> AsyncIterator[Running]:
    """The gateway serving on a free loopback port: a fixed table (hub None) or a hub's."""
    routes = Routes(first if hub is None else None)
    stop = asyncio.Event()
    listening: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    options = ServeOptions(
        host="127.0.0.1", port=0, settings=settings or Settings(open=True),
        max_queue=max_queue, keepalive_s=keepalive_s, grace_s=2.0,
    )  # fmt: skip
    task = asyncio.create_task(serve(options, routes, hub, stop, listening.set_result))
    url = await asyncio.wait_for(asyncio.shield(listening), 10)
    running = Running(url, routes, stop)
    try:
        yield running
    finally:
        for api in running.clients:
            await api.close()
        stop.set()
        with suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
