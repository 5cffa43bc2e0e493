"""Requests through a running gateway to stand-in upstream servers: passthrough, streaming,
retries, errors, client disconnects and /metrics."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import aiohttp
import openai
import pytest

from gateway.app import Settings
from gateway.table import Model
from tests.gateway.support import (
    Upstream,
    dead_endpoint,
    gateway,
    get_json,
    post,
    table,
    upstream,
)

TINY = Model("tiny", aliases=("t",), served_model_name="tiny-gguf")


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_non_streaming_passthrough_with_the_openai_client() -> None:
    async def scenario() -> None:
        async with upstream(Upstream("a")) as up, gateway(table((TINY, [up.url]))) as gw:
            api = gw.client()
            chat = await api.chat.completions.create(
                model="t", messages=[{"role": "user", "content": "hi"}]
            )
            assert chat.choices[0].message.content == "from a"
            completion = await api.completions.create(model="tiny", prompt="hi")
            assert completion.choices[0].text == "from a"
            embedding = await api.embeddings.create(model="tiny-gguf", input="hi")
            assert embedding.data[0].embedding == [0.5, 0.25]
            # The upstream is asked for its served name, whatever name the client used.
            assert [b["model"] for b in up.bodies] == ["tiny-gguf"] * 3
            assert up.paths == ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]
            async with aiohttp.ClientSession() as http:
                body = {"model": "tiny-gguf", "prompt": "x"}
                async with http.post(f"{gw.url}/v1/completions", json=body) as direct:
                    expected = await direct.read()
                async with http.post(f"{up.url}/v1/completions", json=body) as reply:
                    assert await reply.read() == expected
                    assert direct.headers["Content-Type"] == reply.headers["Content-Type"]

    run(scenario)


def test_streaming_passthrough() -> None:
    async def scenario() -> None:
        async with upstream(Upstream("a")) as up, gateway(table((TINY, [up.url]))) as gw:
            stream = await gw.client().chat.completions.create(
                model="tiny", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            words = [c.choices[0].delta.content async for c in stream]
            assert words == ["first", " second", " from a"]

    run(scenario)


def test_a_slow_stream_reaches_the_client_incrementally() -> None:
    async def scenario() -> None:
        async with upstream(Upstream("a", slow=True)) as up, gateway(table((TINY, [up.url]))) as gw:
            stream = await gw.client().chat.completions.create(
                model="tiny", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            chunks = stream.__aiter__()
            first = await asyncio.wait_for(anext(chunks), 5)
            assert first.choices[0].delta.content == "first"
            assert not up.finished.is_set()  # the upstream is still holding the rest
            up.release.set()
            rest = [c.choices[0].delta.content async for c in chunks]
            assert rest == [" second", " from a"]
            assert up.finished.is_set()

    run(scenario)


def test_a_stream_the_upstream_breaks_off_ends_with_an_sse_error_event() -> None:
    async def scenario() -> None:
        async with (
            upstream(Upstream("a", break_off=True)) as up,
            gateway(table((TINY, [up.url]))) as gw,
            aiohttp.ClientSession() as http,
        ):
            body = {"model": "tiny", "messages": [], "stream": True}
            async with http.post(f"{gw.url}/v1/chat/completions", json=body) as reply:
                events = (await reply.read()).split(b"\n\n")
            assert events[0].startswith(b"data: ") and b"first" in events[0]
            error = json.loads(events[1].removeprefix(b"data: "))["error"]
            assert error["code"] == "upstream_broke_off"
            assert events[2:] == [b""]

    run(scenario)


def test_a_dead_replica_is_retried_on_another() -> None:
    async def scenario() -> None:
        async with (
            upstream(Upstream("b")) as up,
            gateway(table((TINY, [dead_endpoint(), up.url]))) as gw,
        ):
            chat = await gw.client().chat.completions.create(
                model="tiny", messages=[{"role": "user", "content": "hi"}]
            )
            assert chat.choices[0].message.content == "from b"

    run(scenario)


def test_at_most_two_retries() -> None:
    async def scenario() -> None:
        async with upstream(Upstream("live")) as live:
            dead = [dead_endpoint() for _ in range(3)]
            async with gateway(table((TINY, [*dead, live.url]))) as gw:
                status, _, body = await post(
                    f"{gw.url}/v1/chat/completions", {"model": "tiny", "messages": []}
                )
                assert status == 502
                assert body["error"]["code"] == "upstream_failed"  # type: ignore[index]
                assert live.bodies == []  # three tries: the fourth replica was never asked

    run(scenario)


def test_a_503_from_the_upstream_is_retried_and_a_cooled_replica_is_skipped() -> None:
    async def scenario() -> None:
        async with (
            upstream(Upstream("bad", status=503)) as bad,
            upstream(Upstream("good")) as good,
            gateway(table((TINY, [bad.url, good.url]))) as gw,
        ):
            api = gw.client()
            for _ in range(3):
                chat = await api.chat.completions.create(model="tiny", messages=[])
                assert chat.choices[0].message.content == "from good"
            assert len(bad.bodies) == 3
            # Three failures in a row: the bad replica cools down and is not asked.
            await api.chat.completions.create(model="tiny", messages=[])
            assert len(bad.bodies) == 3
            _, reply = await get_json(f"{gw.url}/services")
            services = reply["services"]
            assert isinstance(services, list)
            cooling = {s["endpoint"]: s["cooling_down"] for s in services}
            assert cooling == {bad.url: True, good.url: False}

    run(scenario)


def test_a_503_from_the_only_replica_is_passed_through() -> None:
    async def scenario() -> None:
        async with (
            upstream(Upstream("only", status=503)) as only,
            gateway(table((TINY, [only.url]))) as gw,
        ):
            status, _, body = await post(f"{gw.url}/v1/completions", {"model": "tiny"})
            assert status == 503
            assert body["error"]["message"] == "only fails"
            assert len(only.bodies) == 1

    run(scenario)


def test_client_errors_are_openai_shaped() -> None:
    async def scenario() -> None:
        async with upstream(Upstream("a")) as up:
            settings = Settings(open=True, max_body=1000)
            async with gateway(table((TINY, [up.url])), settings=settings) as gw:
                chat = f"{gw.url}/v1/chat/completions"
                status, _, body = await post(chat, {"model": "tinny", "messages": []})
                assert status == 404
                error = body["error"]
                assert isinstance(error, dict)
                assert "'tinny' does not exist; did you mean tiny" in error["message"]
                assert set(error) == {"message", "type", "param", "code"}
                assert (await post(chat, b"{not json"))[0] == 400
                assert (await post(chat, b"[1, 2]"))[0] == 400
                status, _, body = await post(chat, {"messages": []})
                assert status == 400 and "--default-model" in str(body)
                status, _, body = await post(chat, {"model": "tiny", "x": "y" * 2000})
                assert status == 413 and "--max-body" in str(body)
                with pytest.raises(openai.NotFoundError):
                    await gw.client().chat.completions.create(model="nope", messages=[])
                assert up.bodies == []

    run(scenario)


def test_the_default_model_serves_a_body_without_one() -> None:
    async def scenario() -> None:
        async with upstream(Upstream("a")) as up:
            settings = Settings(open=True, default_model="t")
            async with gateway(table((TINY, [up.url])), settings=settings) as gw:
                status, _, _ = await post(f"{gw.url}/v1/chat/completions", {"messages": []})
                assert status == 200
                assert up.bodies[0]["model"] == "tiny-gguf"

    run(scenario)


def test_a_client_that_disconnects_cancels_the_upstream_request() -> None:
    async def scenario() -> None:
        async with upstream(Upstream("a", slow=True)) as up, gateway(table((TINY, [up.url]))) as gw:
            body = {"model": "tiny", "messages": [], "stream": True}
            async with aiohttp.ClientSession() as http:
                reply = await http.post(f"{gw.url}/v1/chat/completions", json=body)
                assert (await reply.content.readuntil(b"\n\n")).startswith(b"data: ")
                reply.close()  # the client goes away mid-stream
            await asyncio.wait_for(up.disconnected.wait(), 5)
            assert not up.finished.is_set()
            up.disconnected.clear()
            up.release.clear()
            body = {"model": "tiny", "messages": []}  # not streaming: waiting for the answer
            async with aiohttp.ClientSession() as http:
                request = asyncio.ensure_future(
                    http.post(f"{gw.url}/v1/chat/completions", json=body)
                )
                up.arrived.clear()
                await asyncio.wait_for(up.arrived.wait(), 5)
                request.cancel()
            await asyncio.wait_for(up.disconnected.wait(), 5)

    run(scenario)


def test_metrics_has_the_series() -> None:
    async def scenario() -> None:
        async with upstream(Upstream("a")) as up, gateway(table((TINY, [up.url]))) as gw:
            api = gw.client()
            await api.chat.completions.create(model="tiny", messages=[])
            stream = await api.chat.completions.create(model="tiny", messages=[], stream=True)
            _ = [c async for c in stream]
            with pytest.raises(openai.NotFoundError):
                await api.chat.completions.create(model="other", messages=[])
            async with aiohttp.ClientSession() as http, http.get(f"{gw.url}/metrics") as reply:
                text = await reply.text()
        for line in (
            'gpufleet_gateway_requests_total{code="200",model="tiny"} 2.0',
            'gpufleet_gateway_requests_total{code="404",model="(unknown)"} 1.0',
            'gpufleet_gateway_errors_total{error="model_not_found",model="(unknown)"} 1.0',
            'gpufleet_gateway_request_seconds_count{model="tiny"} 2.0',
            'gpufleet_gateway_time_to_first_token_seconds_count{model="tiny"} 1.0',
            'gpufleet_gateway_in_flight{model="tiny"} 0.0',
        ):
            assert line in text, line
        assert "# TYPE gpufleet_gateway_queued gauge" in text
        assert "# TYPE gpufleet_gateway_cold_starts_total counter" in text

    run(scenario)
