"""Paths that would leave /v1/ upstream, refusals that come before a streaming answer
starts, and keys refused once the hub has been silent too long."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import aiohttp
import pytest

from gateway.app import Settings
from gateway.hub import HubRefused
from gateway.table import KeyHash, Model, Replica, Table
from tests.gateway.support import FakeHub, Running, Upstream, gateway, get_json, post, upstream

OPEN = Settings(open=True)
STOPPED = Model("tiny", state="stopped", load_timeout_s=10)
STREAM = {"model": "tiny", "messages": [], "stream": True}


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 60))


async def ready(gw: Running) -> None:
    while gw.routes.table is None:
        await asyncio.wait_for(gw.routes.next_change().wait(), 5)


async def raw_post(url: str, path: str) -> tuple[int, bytes]:
    """POST with the path sent exactly as written (no client-side normalisation)."""
    where = urlsplit(url)
    assert where.hostname is not None and where.port is not None
    reader, writer = await asyncio.open_connection(where.hostname, where.port)
    body = b'{"model": "tiny", "messages": []}'
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    writer.write(head.encode() + body)
    await writer.drain()
    data = await reader.read()
    writer.close()
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1]


@pytest.mark.parametrize(
    "path",
    [
        "/v1/../slots/0?action=erase",
        "/v1/%2e%2e/props",
        "/v1/%2E%2E/props",
        "/v1/..%2fprops",
        "/v1/chat/%2e/completions",
        "/v1/chat%2fcompletions",
    ],
)
def test_a_path_that_leaves_v1_is_not_forwarded(path: str) -> None:
    async def scenario() -> None:
        async with upstream(Upstream("a")) as up:
            table = Table(1, (Model("tiny"),), (Replica("tiny", "n", up.url, True),))
            async with gateway(table) as gw:
                status, body = await raw_post(gw.url, path)
                assert status == 404
                assert json.loads(body)["error"]["code"] == "route_not_found"
                assert up.paths == []
                status, _ = await raw_post(gw.url, "/v1/chat/completions?x=1")
                assert status == 200 and up.paths == ["/v1/chat/completions"]

    run(scenario)


async def stream_status(url: str) -> tuple[int, str | None, dict[str, object]]:
    async with aiohttp.ClientSession() as http, http.post(url, json=STREAM) as reply:
        body = await reply.read()
        return reply.status, reply.headers.get("Retry-After"), json.loads(body)


def test_a_static_model_without_endpoint_refuses_a_stream_with_a_503() -> None:
    async def scenario() -> None:
        async with gateway(Table(1, (STOPPED,), ())) as gw:
            status, retry, body = await stream_status(f"{gw.url}/v1/chat/completions")
            assert status == 503 and retry is not None
            assert "static --routes" in str(body["error"])

    run(scenario)


def test_the_hubs_refusal_of_a_stream_is_a_503_with_retry_after() -> None:
    async def scenario() -> None:
        hub = FakeHub(Table(1, (STOPPED,)), ensured=HubRefused("model tiny: no free node"))
        async with gateway(None, hub, OPEN) as gw:
            await ready(gw)
            status, retry, body = await stream_status(f"{gw.url}/v1/chat/completions")
            assert status == 503 and retry == "10"
            assert body["error"]["code"] == "hub_refused"  # type: ignore[index]

    run(scenario)


def test_a_full_queue_refuses_a_stream_with_a_503() -> None:
    async def scenario() -> None:
        hub = FakeHub(Table(1, (STOPPED,)))
        hub.ensure_gate.clear()
        async with gateway(None, hub, OPEN, max_queue=1) as gw:
            await ready(gw)
            url = f"{gw.url}/v1/chat/completions"
            waiting = asyncio.ensure_future(post(url, {"model": "tiny", "messages": []}))
            await asyncio.wait_for(hub.ensure_called.wait(), 5)
            status, retry, body = await stream_status(url)
            assert status == 503 and retry is not None
            assert body["error"]["code"] == "queue_full"  # type: ignore[index]
            waiting.cancel()

    run(scenario)


def sha(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def test_keys_are_refused_once_the_hub_has_been_silent_too_long() -> None:
    async def scenario() -> None:
        secret = "gpf-app-secret"
        settings = Settings(open=False, hub_silence_limit_s=0.3)
        async with upstream(Upstream("a")) as up:
            table = Table(
                1, (Model("tiny"),), (Replica("tiny", "n", up.url, True),),
                keys=(KeyHash("app", sha(secret)),),
            )  # fmt: skip
            hub = FakeHub(table)
            async with gateway(None, hub, settings) as gw:
                await ready(gw)
                chat = f"{gw.url}/v1/chat/completions"
                body = {"model": "tiny", "messages": []}
                auth = {"Authorization": f"Bearer {secret}"}
                assert (await post(chat, body, auth))[0] == 200
                hub.tables.put_nowait(ConnectionError("hub went away"))
                await asyncio.sleep(0.2)
                assert (await post(chat, body, auth))[0] == 200  # within the bound
                await asyncio.sleep(0.3)
                status, headers, reply = await post(chat, body, auth)
                assert status == 503 and "Retry-After" in headers
                assert reply["error"]["code"] == "hub_silent"  # type: ignore[index]
                assert "no word from the hub for" in reply["error"]["message"]  # type: ignore[index]
                status, ready_body = await get_json(f"{gw.url}/readyz")
                assert status == 503 and ready_body["table_age_s"] > 0.3
                hub.tables.put_nowait(table)  # heard again
                await asyncio.wait_for(gw.routes.next_change().wait(), 5)
                assert (await post(chat, body, auth))[0] == 200
                status, ready_body = await get_json(f"{gw.url}/readyz")
                assert status == 200 and ready_body["table_age_s"] == 0

    run(scenario)
