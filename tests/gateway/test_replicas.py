"""Replicas that change under a request: an idle stop racing it, a replica dropped from the
table while a request is bound to it, in-flight counts over every gateway, and a loading
replica seen ready by the gateway's own probe before the table says so."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import aiohttp

from gateway import app
from gateway.app import Settings
from gateway.table import Model, Replica, Table
from tests.gateway.support import FakeHub, Running, Upstream, gateway, get_json, post, upstream

OPEN = Settings(open=True)
CHAT = {"model": "tiny", "messages": []}


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 60))


async def ready(gw: Running) -> None:
    while gw.routes.table is None:
        await asyncio.wait_for(gw.routes.next_change().wait(), 5)


async def table_at(gw: Running, generation: int) -> None:
    while gw.routes.table is None or gw.routes.table.generation < generation:
        await asyncio.wait_for(gw.routes.next_change().wait(), 5)


def tiny(generation: int, *replicas: Replica, state: str = "ready", timeout: float = 10) -> Table:
    return Table(generation, (Model("tiny", state=state, load_timeout_s=timeout),), replicas)


def test_a_request_whose_model_was_stopped_under_it_waits_for_a_fresh_start() -> None:
    async def scenario() -> None:
        hub = FakeHub()
        async with (
            upstream(Upstream("a", slow=True, break_off=True)) as a,
            upstream(Upstream("b")) as b,
            gateway(None, hub, OPEN) as gw,
        ):
            hub.tables.put_nowait(tiny(1, Replica("tiny", "n0", a.url, True)))
            await ready(gw)
            request = asyncio.ensure_future(post(f"{gw.url}/v1/chat/completions", CHAT))
            await asyncio.wait_for(a.arrived.wait(), 5)
            # The idle stop begins: the replica is no longer healthy, then its server dies.
            hub.tables.put_nowait(tiny(2, Replica("tiny", "n0", a.url, False), state="ready"))
            await table_at(gw, 2)
            a.release.set()
            await asyncio.wait_for(hub.ensure_called.wait(), 5)
            hub.tables.put_nowait(tiny(3, Replica("tiny", "n1", b.url, True)))
            status, _, body = await request
            assert status == 200, body
            assert "from b" in json.dumps(body)
            assert hub.ensure_calls == ["tiny"]

    run(scenario)


def test_a_replica_dropped_from_the_table_ends_its_requests() -> None:
    async def scenario() -> None:
        hub = FakeHub()
        async with (
            upstream(Upstream("a", slow=True)) as a,
            upstream(Upstream("b")) as b,
            gateway(None, hub, OPEN) as gw,
            aiohttp.ClientSession() as http,
        ):
            both = (Replica("tiny", "n0", a.url, True), Replica("tiny", "n1", b.url, True))
            hub.tables.put_nowait(tiny(1, *both))
            await ready(gw)
            url = f"{gw.url}/v1/chat/completions"
            # Streaming: a chunk went out, then node n0 goes down (its endpoint empties).
            async with http.post(url, json={**CHAT, "stream": True}) as reply:
                assert reply.status == 200
                first = await asyncio.wait_for(reply.content.readuntil(b"\n\n"), 5)
                assert b"first" in first
                gone = Replica("tiny", "n0", "", False)
                hub.tables.put_nowait(tiny(2, gone, both[1]))
                rest = await asyncio.wait_for(reply.read(), 5)
            error = json.loads(rest.split(b"\n\n")[0].removeprefix(b"data: "))["error"]
            assert error["code"] == "replica_gone"
            # Not streaming, nothing sent yet: it moves to the replica that is left.
            a.arrived.clear()
            hub.tables.put_nowait(tiny(3, *both))
            await table_at(gw, 3)
            request = asyncio.ensure_future(post(url, CHAT))
            await asyncio.wait_for(a.arrived.wait(), 5)
            hub.tables.put_nowait(tiny(4, both[1]))
            status, _, body = await asyncio.wait_for(request, 5)
            assert status == 200 and "from b" in json.dumps(body)
            assert not a.release.is_set()
            status, services = await get_json(f"{gw.url}/services")
            assert [s["in_flight"] for s in services["services"]] == [0]

    run(scenario)


def test_upstream_reads_time_out() -> None:
    async def scenario() -> None:
        async with app.client_session() as session:
            limit = session.timeout.sock_read
            assert limit is not None and 60 <= limit <= 3600

    run(scenario)


def test_requests_go_to_the_replica_least_busy_over_every_gateway() -> None:
    async def scenario() -> None:
        hub = FakeHub()
        hub.interval_s = 0.05
        async with (
            upstream(Upstream("a")) as a,
            upstream(Upstream("b", slow=True)) as b,
            gateway(None, hub, OPEN) as gw,
        ):
            # Other gateways have 4 requests at a; this one has none anywhere.
            hub.tables.put_nowait(tiny(
                1, Replica("tiny", "n0", a.url, True, in_flight=4),
                Replica("tiny", "n1", b.url, True, in_flight=0),
            ))  # fmt: skip
            await ready(gw)
            request = asyncio.ensure_future(post(f"{gw.url}/v1/chat/completions", CHAT))
            await asyncio.wait_for(b.arrived.wait(), 5)
            _, services = await get_json(f"{gw.url}/services")
            rows = {s["endpoint"]: s for s in services["services"]}
            assert (rows[a.url]["in_flight"], rows[a.url]["in_flight_cluster"]) == (0, 4)
            assert (rows[b.url]["in_flight"], rows[b.url]["in_flight_cluster"]) == (1, 1)
            # The reports carry in flight per replica.
            while True:
                hub.reported.clear()
                await asyncio.wait_for(hub.reported.wait(), 5)
                (report,) = [r for r in hub.reports[-1] if r.model == "tiny"]
                if report.in_flight == 1:
                    break
            assert dict(report.replicas) == {b.url: 1}
            b.release.set()
            status, _, body = await request
            assert status == 200 and "from b" in json.dumps(body)


def test_a_loading_replica_that_answers_is_used_before_the_table_says_healthy() -> None:
    async def scenario() -> None:
        hub = FakeHub(tiny(1, state="stopped", timeout=3))
        async with upstream(Upstream("a")) as a, gateway(None, hub, OPEN) as gw:
            await ready(gw)
            started = asyncio.get_running_loop().time()
            request = asyncio.ensure_future(post(f"{gw.url}/v1/chat/completions", CHAT))
            await asyncio.wait_for(hub.ensure_called.wait(), 5)
            a.listed = ()  # up, but the model is not loaded yet
            loading = Replica("tiny", "n0", a.url, False, "loading")
            hub.tables.put_nowait(tiny(2, loading, state="loading", timeout=3))
            await table_at(gw, 2)
            await asyncio.sleep(0.3)
            assert not request.done() and a.probes >= 2
            a.listed = ("tiny",)
            status, _, body = await request
            assert status == 200, body
            assert asyncio.get_running_loop().time() - started < 2
            probes = a.probes
            await asyncio.sleep(0.3)
            assert a.probes == probes  # nobody waits: no more probing
            # Until the table says otherwise, later requests go there too.
            assert (await post(f"{gw.url}/v1/chat/completions", CHAT))[0] == 200
            draining = Replica("tiny", "n0", a.url, False, "draining")
            hub.tables.put_nowait(tiny(3, draining, state="loading", timeout=0.5))
            await table_at(gw, 3)
            status, _, body = await post(f"{gw.url}/v1/chat/completions", CHAT)
            assert status == 503, body

    run(scenario)
