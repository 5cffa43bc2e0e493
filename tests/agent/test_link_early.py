"""Early heartbeats: the real AgentLink against a scripted hub on loopback. A change the hub
acts on at once (what runs and its health, a GPU lost) goes in a beat of its own within about
a second, not with the next regular beat up to an interval later; early beats keep a quarter
interval between them. Podman and the services' HTTP answers are scripted at the process
edge (tests/agent/test_health.py Host); the health monitor is the real one, on real time."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

from agent.cache.index import CachedEntry
from agent.cache.store import ModelCache
from agent.compose import Podman
from agent.health import HealthMonitor
from agent.link import AgentLink, Identity
from agent.main import task_kinds
from agent.pace import Pace
from agent.probes import GpuProbe, NoProbe
from agent.projects import ProjectStore
from agent.tasks.context import TaskContext
from agent.tasks.runner import TaskRunner
from gpufleet.v1 import agent_link_pb2 as pb
from gpufleet.v1 import types_pb2
from tests.agent.scripted_hub import ScriptedHub, Stream, serving
from tests.agent.test_health import COMPOSE, Host
from tests.agent.test_heartbeat import A400, A5500, ScriptedProbe

# The link's jitter, seeded: its first regular beat falls at 0.84 of an interval after the
# welcome (50.6 s at 60 s, 6.75 s at 8 s), so a beat before then is an early one.
SEED = 0


def node(tmp_path: Path, host: Host) -> tuple[HealthMonitor, TaskRunner]:
    """A node running project alpha (one service, healthy), as agent/main.py wires it."""
    env = {"WEB_PORT": "8123"}
    store = ProjectStore(tmp_path, env=env)
    store.write("alpha", COMPOSE, hashlib.sha256(COMPOSE.encode()).hexdigest())
    podman = Podman("gpu-a", run=host.run)
    watch = HealthMonitor(store, podman, env, fetch=host.fetch)
    context = TaskContext.create(store, podman, NoProbe(), env)
    return watch, TaskRunner(task_kinds(), context)


@asynccontextmanager
async def linked(
    hub: ScriptedHub, probe: GpuProbe, node: tuple[HealthMonitor, TaskRunner] | None = None
) -> AsyncIterator[Stream]:
    """A real link to `hub`; its stream once welcomed."""
    watch, tasks = node if node is not None else (None, None)
    async with serving(hub) as address:
        link = AgentLink(address, Identity("gpu-a", "id-a"), probe, tasks=tasks, monitor=watch,
                         rng=random.Random(SEED))  # fmt: skip
        stop = asyncio.Event()
        running = asyncio.create_task(link.run(stop))
        try:
            await asyncio.wait_for(hub.joined.wait(), 10)
            yield hub.streams[0]
        finally:
            stop.set()
            await asyncio.wait_for(running, 10)


def services(beat: pb.Heartbeat) -> list[tuple[str, str, str]]:
    assert beat.HasField("projects"), beat
    [project] = beat.projects.projects
    return [(s.container_id, s.state, s.health) for s in project.services]


def test_a_health_change_reaches_the_hub_within_seconds_at_a_60_s_interval(
    tmp_path: Path,
) -> None:
    host = Host()
    watch, tasks = node(tmp_path, host)

    async def play() -> None:
        loop = asyncio.get_running_loop()
        async with linked(ScriptedHub(60.0), NoProbe(), (watch, tasks)) as stream:
            await asyncio.sleep(0.3)
            host.state = "exited"  # a task stopped it; it tells the monitor
            watch.touched("alpha")
            changed_at = loop.time()
            [beat] = await stream.beat(1, within=3.0)
            assert beat.at - changed_at < 2.0
            assert services(beat.message) == [("c1", "exited", "unhealthy")]
            await asyncio.sleep(2.5)  # nothing else changed: no more early beats
            assert len(stream.beats) == 1

    asyncio.run(play())


def test_two_changes_make_one_early_beat_then_the_next_a_quarter_interval_later(
    tmp_path: Path,
) -> None:
    host = Host()
    watch, tasks = node(tmp_path, host)
    interval = 8.0

    async def play() -> None:
        loop = asyncio.get_running_loop()
        async with linked(ScriptedHub(interval), NoProbe(), (watch, tasks)) as stream:
            await asyncio.sleep(0.3)
            host.state = "exited"
            watch.touched("alpha")
            first_at = loop.time()
            await asyncio.sleep(1.5)
            host.state, host.container = "running", "c2"  # started again, a new container
            watch.touched("alpha")
            second_at = loop.time()
            first, second = await stream.beat(2, within=4.0)
            assert first.at - first_at < 2.0
            assert services(first.message) == [("c1", "exited", "unhealthy")]
            gap = second.at - first.at
            assert interval / 4 - 0.1 <= gap < interval / 4 + 1.2, gap  # not right after it
            assert second.at - second_at < interval / 4 + 1.2
            assert [s[:2] for s in services(second.message)] == [("c2", "running")]
            await asyncio.sleep(1.5)  # the regular beat comes 6.75 s after the welcome
            assert len(stream.beats) == 2

    asyncio.run(play())


def test_a_gpu_going_lost_is_sent_early_with_the_gpus() -> None:
    probe = ScriptedProbe(A5500, A400)

    async def play() -> None:
        loop = asyncio.get_running_loop()
        async with linked(ScriptedHub(60.0, telemetry_s=600.0), probe) as stream:
            await asyncio.sleep(0.3)
            probe.result = replace(probe.result, gpus=(A5500, replace(A400, state="lost")))
            lost_at = loop.time()
            [beat] = await stream.beat(1, within=3.0)
            assert beat.at - lost_at < 2.0
            assert not beat.message.telemetry_unchanged
            assert [(g.index, g.state) for g in beat.message.gpus] == [
                (0, types_pb2.GPU_STATE_OK), (1, types_pb2.GPU_STATE_LOST)]  # fmt: skip
            assert not beat.message.HasField("inventory")  # lost is a state, not new hardware

    asyncio.run(play())


def test_what_makes_a_beat_early_and_that_sending_it_settles_it(tmp_path: Path) -> None:
    """Telemetry readings wait for the regular beat; a GPU lost or back, a GPU gone (the
    inventory) and a model cache entry do not; once a beat carried them nothing is pending,
    so a change costs one early beat, not one every quarter interval."""
    probe = ScriptedProbe(A5500, A400)
    cache = ModelCache(tmp_path / "models", reserve=0)
    link = AgentLink("unused:1", Identity("gpu-a", "id"), probe, caches=cache)
    link.pace = Pace(60.0, telemetry_s=600.0)

    async def play() -> None:
        await link.hello()
        assert not await link.reporter.pending()
        await link.heartbeat(1)  # the stream's first telemetry
        probe.result = replace(probe.result, gpus=(replace(A5500, utilization_percent=99), A400))
        assert not await link.reporter.pending()  # moved telemetry rides on the regular beat
        sent = 1
        lost = replace(A400, state="lost")
        for gpus in ((A5500, lost), (A5500, A400), (A5500,)):  # lost, back, gone (inventory)
            probe.result = replace(probe.result, gpus=gpus)
            assert await link.reporter.pending()
            await link.heartbeat(sent := sent + 1)
            assert not await link.reporter.pending()
        cache.index.write(CachedEntry("tiny", "main"))
        assert await link.reporter.pending()
        assert [c.entry for c in (await link.heartbeat(sent + 1)).caches.caches] == ["tiny"]
        assert not await link.reporter.pending()

    asyncio.run(play())
