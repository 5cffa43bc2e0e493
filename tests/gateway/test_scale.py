"""Scale from zero through a running gateway that follows a stand-in hub: one EnsureModel
for concurrent requests, the load timeout, the queue bound and the hub's refusals."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import aiohttp

from gateway.app import Settings
from gateway.hub import Ensured, HubRefused
from gateway.table import Model, Replica, Table
from tests.gateway.support import (
    FakeHub,
    Running,
    Upstream,
    dead_endpoint,
    gateway,
    get_json,
    post,
    upstream,
)

STOPPED = Model("tiny", state="stopped", load_timeout_s=10)
OPEN = Settings(open=True)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 60))


def stopped(model: Model = STOPPED, generation: int = 1) -> Table:
    return Table(generation, (model,))


def started(endpoint: str, generation: int = 2) -> Table:
    model = Model("tiny", state="ready", load_timeout_s=10)
    return Table(generation, (model,), (Replica("tiny", "node0", endpoint, True),))


async def ready(gw: Running) -> None:
    while gw.routes.table is None:
        await asyncio.wait_for(gw.routes.next_change().wait(), 5)


CHAT = {"model": "tiny", "messages": []}


def test_two_concurrent_requests_share_one_start() -> None:
    async def scenario() -> None:
        hub = FakeHub(stopped())
        hub.ensure_gate.clear()
        async with upstream(Upstream("a")) as up, gateway(None, hub, OPEN) as gw:
            await ready(gw)
            url = f"{gw.url}/v1/chat/completions"
            first = asyncio.ensure_future(post(url, CHAT))
            second = asyncio.ensure_future(post(url, CHAT))
            await asyncio.wait_for(hub.ensure_called.wait(), 5)
            hub.ensure_gate.set()
            await asyncio.sleep(0.2)
            assert not first.done() and not second.done()  # waiting for the table
            hub.tables.put_nowait(started(up.url))
            assert (await first)[0] == 200
            assert (await second)[0] == 200
            assert hub.ensure_calls == ["tiny"]
            assert len(up.bodies) == 2
            async with aiohttp.ClientSession() as http, http.get(f"{gw.url}/metrics") as reply:
                text = await reply.text()
            assert 'gpufleet_gateway_cold_starts_total{model="tiny"} 1.0' in text
            assert 'gpufleet_gateway_queued{model="tiny"} 0.0' in text

    run(scenario)


def test_a_load_that_takes_too_long_is_a_503_with_retry_after() -> None:
    async def scenario() -> None:
        hub = FakeHub(stopped(Model("tiny", state="stopped", load_timeout_s=0.3)))
        async with gateway(None, hub, OPEN) as gw:
            await ready(gw)
            status, headers, body = await post(f"{gw.url}/v1/chat/completions", CHAT)
            assert status == 503
            assert int(headers["Retry-After"]) >= 1
            message = str(body["error"]["message"])  # type: ignore[index]
            assert "'tiny' did not become ready" in message and "stopped" in message

    run(scenario)


def test_the_queue_per_model_is_bounded() -> None:
    async def scenario() -> None:
        hub = FakeHub(stopped())
        async with upstream(Upstream("a")) as up, gateway(None, hub, OPEN, max_queue=1) as gw:
            await ready(gw)
            url = f"{gw.url}/v1/chat/completions"
            waiting = asyncio.ensure_future(post(url, CHAT))
            await asyncio.wait_for(hub.ensure_called.wait(), 5)
            status, headers, body = await post(url, CHAT)
            assert status == 503 and "Retry-After" in headers
            assert body["error"]["code"] == "queue_full"  # type: ignore[index]
            hub.tables.put_nowait(started(up.url))
            assert (await waiting)[0] == 200

    run(scenario)


def test_the_hubs_refusal_is_a_503_with_its_line() -> None:
    async def scenario() -> None:
        hub = FakeHub(stopped(), ensured=HubRefused("model tiny: no node has 24 GB free"))
        async with gateway(None, hub, OPEN) as gw:
            await ready(gw)
            status, _, body = await post(f"{gw.url}/v1/chat/completions", CHAT)
            assert status == 503
            assert "no node has 24 GB free" in str(body)
            # The next request asks again: a refusal is not remembered.
            await post(f"{gw.url}/v1/chat/completions", CHAT)
            assert hub.ensure_calls == ["tiny", "tiny"]

    run(scenario)


def test_a_streaming_request_gets_headers_and_loading_comments_while_it_waits() -> None:
    async def scenario() -> None:
        hub = FakeHub(stopped(), ensured=Ensured("starting", ("node0",)))
        async with (
            upstream(Upstream("a")) as up,
            gateway(None, hub, OPEN, keepalive_s=0.05) as gw,
            aiohttp.ClientSession() as http,
        ):
            await ready(gw)
            body = {**CHAT, "stream": True}
            async with http.post(f"{gw.url}/v1/chat/completions", json=body) as reply:
                assert reply.status == 200
                assert reply.headers["Content-Type"] == "text/event-stream"
                assert await reply.content.readuntil(b"\n\n") == b": loading tiny\n\n"
                hub.tables.put_nowait(started(up.url))
                rest = await reply.read()
            assert rest.endswith(b"data: [DONE]\n\n")
            assert b"from a" in rest

    run(scenario)


def test_a_failure_after_a_streaming_wait_is_an_sse_error_event() -> None:
    async def scenario() -> None:
        hub = FakeHub(stopped())
        async with gateway(None, hub, OPEN) as gw, aiohttp.ClientSession() as http:
            await ready(gw)
            body = {**CHAT, "stream": True}
            async with http.post(f"{gw.url}/v1/chat/completions", json=body) as reply:
                assert reply.status == 200
                await asyncio.wait_for(hub.ensure_called.wait(), 5)
                hub.tables.put_nowait(started(dead_endpoint()))  # ready, yet refuses connections
                events = (await reply.read()).split(b"\n\n")
            error = json.loads(events[0].removeprefix(b"data: "))["error"]
            assert error["code"] == "upstream_failed"
            assert events[1:] == [b""]

    run(scenario)


def test_the_gateway_waits_for_the_table_and_keeps_it_while_the_hub_is_away() -> None:
    async def scenario() -> None:
        hub = FakeHub()
        async with upstream(Upstream("a")) as up, gateway(None, hub, OPEN) as gw:
            status, _ = await get_json(f"{gw.url}/readyz")
            assert status == 503
            status, _, body = await post(f"{gw.url}/v1/chat/completions", CHAT)
            assert status == 503 and body["error"]["code"] == "not_ready"  # type: ignore[index]
            hub.tables.put_nowait(started(up.url))
            await ready(gw)
            assert (await get_json(f"{gw.url}/readyz"))[0] == 200
            hub.watching.clear()
            hub.tables.put_nowait(ConnectionError("hub went away"))
            await asyncio.wait_for(hub.watching.wait(), 5)  # reconnected, after a backoff
            assert hub.watches == 2
            assert (await post(f"{gw.url}/v1/chat/completions", CHAT))[0] == 200

    run(scenario)
