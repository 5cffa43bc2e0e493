"""Scale from zero on a real in-process hub with two in-process agents: a start is planned
outside the scaler's lock (the decision loop goes on meanwhile), concurrent calls share it,
its node is held from other starts, a models lane with no room answers RESOURCE_EXHAUSTED
saying the hub is busy; and no idle stop until a report window after the loop started."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest

from hub.gateway.scaler import Ensured
from hub.models.deployments import Refused
from hub.server import HubConfig, HubServer
from tests.hub.test_link import CountingProbe, running_agent
from tests.support.tiny_gguf import write_tiny_gguf

MODEL = """\
name: {name}
engine: llama-cpp
source: {{path: {path}}}
llama_cpp: {{backend: cpu, n_ctx: 256}}
aliases: [{name}-alias]
gateway: {{port: 18{port}}}
"""
HOLD_S = 3.0


def outcome(result: Ensured | BaseException) -> object:
    return (type(result), str(result)) if isinstance(result, BaseException) else result


def test_a_start_is_planned_outside_the_lock_shared_and_refused_when_the_hub_is_busy(
    tmp_path: Path,
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    for port, name in enumerate(("tiny-a", "tiny-b", "tiny-c")):
        path = write_tiny_gguf(tmp_path / f"{name}.gguf", seed=port, name=name)
        (models / f"{name}.yaml").write_text(MODEL.format(name=name, path=path, port=port))

    async def main() -> None:
        config = HubConfig("127.0.0.1:0", tmp_path / "hub", heartbeat_interval=0.5,
                           insecure=True, models_dir=models)  # fmt: skip
        server = HubServer(config)
        await server.start()
        try:
            async with running_agent(server, "n1", CountingProbe()), \
                       running_agent(server, "n2", CountingProbe()), \
                       running_agent(server, "n3", CountingProbe()):  # fmt: skip
                await scenario(server)
        finally:
            await server.stop(grace=1)

    async def scenario(server: HubServer) -> None:
        scaler, lane = server.scaler, server.work.models
        # A fresh hub stops nothing for idleness until every live gateway could report.
        assert not scaler.unloads(scaler.clock())
        scaler.activate()
        since = scaler.clock()
        assert not scaler.unloads(since + scaler.activity.window * 0.9)
        assert scaler.unloads(since + scaler.activity.window)
        await scaler.observer.snapshot()  # the models are read once; then from the cache

        def hold(count: int) -> list[asyncio.Task[None]]:
            return [asyncio.create_task(lane.run(time.sleep, HOLD_S, limit_s=30))
                    for _ in range(count)]  # fmt: skip

        # The lane's workers are taken: the start's planning waits for one.
        held = hold(lane.workers)
        await asyncio.sleep(0.5)
        calls = [asyncio.create_task(scaler.ensure(n)) for n in ("tiny-a", "tiny-a-alias")]
        await asyncio.sleep(0.3)
        b = asyncio.create_task(scaler.ensure("tiny-b"))
        await asyncio.sleep(0.3)
        pending = scaler.starting()
        assert pending["tiny-a"].message == f"starting on {pending['tiny-a'].nodes[0]}"
        assert len(pending["tiny-a"].nodes) == 1 and len(pending["tiny-b"].nodes) == 1
        assert pending["tiny-a"].nodes != pending["tiny-b"].nodes  # its node is held
        # The decision loop does not wait for that planning.
        started = time.monotonic()
        await asyncio.wait_for(scaler.tick(), HOLD_S / 2)
        assert time.monotonic() - started < HOLD_S / 2
        one, two, _ = await asyncio.gather(*calls, b, return_exceptions=True)
        assert outcome(one) == outcome(two)  # one start, shared (or one refusal)
        await asyncio.gather(*held)

        # No room in the lane at all: RESOURCE_EXHAUSTED, one line saying the hub is busy.
        held = hold(lane.workers + lane.waiting)
        await asyncio.sleep(0.5)
        with pytest.raises(Refused) as raised:
            await scaler.ensure("tiny-c")
        assert raised.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert str(raised.value).startswith("the hub is busy") and "\n" not in str(raised.value)
        await asyncio.gather(*held)

    asyncio.run(main())
