"""API keys and the monitoring routes (/v1/models, /services, /gpu-stats, probes) of a
running gateway."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable

import openai
import pytest

from gateway.app import Settings
from gateway.hub import GpuRow
from gateway.table import KeyHash, Model, Replica, Table
from tests.gateway.support import FakeHub, Running, Upstream, gateway, get_json, post, upstream

KEYED = Settings(open=False)
ALL = "gpf-all-secret"
ONLY_TINY = "gpf-tiny-secret"


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 60))


def sha(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def cluster(endpoint: str) -> Table:
    models = (
        Model("tiny", aliases=("t",), state="ready", engine="llama-cpp"),
        Model("big", state="stopped", engine="vllm"),
    )
    replicas = (
        Replica("tiny", "gpu-a", endpoint, True),
        Replica("tiny", "gpu-b", "", False, "loading"),
    )
    keys = (KeyHash("app1", sha(ALL)), KeyHash("app2", sha(ONLY_TINY), frozenset({"tiny"})))
    return Table(7, models, replicas, keys)


async def ready(gw: Running) -> None:
    while gw.routes.table is None:
        await asyncio.wait_for(gw.routes.next_change().wait(), 5)


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def test_keys_are_required_and_limited_to_their_models() -> None:
    async def scenario() -> None:
        async with (
            upstream(Upstream("a")) as up,
            gateway(None, FakeHub(cluster(up.url)), KEYED) as gw,
        ):
            await ready(gw)
            chat = f"{gw.url}/v1/chat/completions"
            body = {"model": "tiny", "messages": []}
            status, _, reply = await post(chat, body)
            assert status == 401 and "hubctl keys create" in str(reply)
            assert (await post(chat, body, bearer("gpf-wrong")))[0] == 401
            assert (await post(chat, body, bearer(ONLY_TINY)))[0] == 200
            status, _, reply = await post(chat, {**body, "model": "big"}, bearer(ONLY_TINY))
            assert status == 403 and "'app2' may not use model 'big'" in str(reply)
            with pytest.raises(openai.AuthenticationError):
                api = gw.client("bad")
                await api.models.list()
            api = gw.client(ONLY_TINY)
            assert [m.id async for m in api.models.list()] == ["tiny"]
            for path in ("/v1/models", "/services", "/gpu-stats", "/metrics"):
                assert (await get_json(gw.url + path))[0] == 401, path
            for path in ("/healthz", "/readyz"):
                assert (await get_json(gw.url + path))[0] == 200, path

    run(scenario)


def test_monitoring_routes() -> None:
    async def scenario() -> None:
        hub = FakeHub()
        hub.gpus = [GpuRow("gpu-a", "ready", 0, "NVIDIA H200", 1024, 143771, 35, 41.0, 120.5)]
        async with upstream(Upstream("a")) as up, gateway(None, hub, KEYED) as gw:
            hub.tables.put_nowait(cluster(up.url))
            await ready(gw)
            api = gw.client(ALL)
            await api.chat.completions.create(model="t", messages=[])
            status, models = await get_json(f"{gw.url}/v1/models", bearer(ALL))
            assert status == 200 and models["object"] == "list"
            tiny, big = models["data"]  # type: ignore[misc]
            assert tiny["id"] == "tiny" and tiny["state"] == "ready"
            assert tiny["nodes"] == ["gpu-a", "gpu-b"] and tiny["aliases"] == ["t"]
            assert big["state"] == "stopped" and big["nodes"] == []
            _, services = await get_json(f"{gw.url}/services", bearer(ALL))
            first, second = services["services"]  # type: ignore[misc]
            assert first["node"] == "gpu-a" and first["endpoint"] == up.url
            assert first["healthy"] is True and first["in_flight"] == 0
            assert first["response_time_ms"] > 0
            assert second["healthy"] is False and second["response_time_ms"] is None
            _, gpus = await get_json(f"{gw.url}/gpu-stats", bearer(ALL))
            assert gpus == {
                "gpus": [{
                    "node": "gpu-a", "node_status": "ready", "index": 0, "name": "NVIDIA H200",
                    "memory_used_mib": 1024, "memory_total_mib": 143771,
                    "utilization_percent": 35, "temperature_c": 41.0, "power_w": 120.5,
                    "models": ["tiny"],
                }]
            }  # fmt: skip

    run(scenario)


def test_activity_is_reported_at_once_when_a_model_gets_a_request() -> None:
    async def scenario() -> None:
        hub = FakeHub()
        async with upstream(Upstream("a", slow=True)) as up, gateway(None, hub, KEYED) as gw:
            hub.tables.put_nowait(cluster(up.url))
            await ready(gw)
            await asyncio.wait_for(hub.reported.wait(), 5)  # the first report, at start
            hub.reported.clear()
            request = asyncio.ensure_future(
                post(f"{gw.url}/v1/chat/completions", {"model": "tiny"}, bearer(ALL))
            )
            # The hub asked for a report every 30 s: this one comes because 0 -> 1 in flight.
            await asyncio.wait_for(hub.reported.wait(), 5)
            (tiny,) = hub.reports[-1]
            assert (tiny.model, tiny.in_flight, tiny.requests) == ("tiny", 1, 1)
            assert tiny.last_finished is None
            up.release.set()
            assert (await request)[0] == 200

    run(scenario)
