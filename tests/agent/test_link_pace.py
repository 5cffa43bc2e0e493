"""The real AgentLink against a scripted hub on loopback: the hub's pace is obeyed, beats are
spread so that many agents never beat in phase, GPU telemetry rides only when it moved or is
due, and a lost link is redialled at a random point of an interval."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace

import pytest

from agent import link as agent_link
from agent.link import AgentLink, Identity
from agent.probes import GpuProbe, NoProbe
from gpufleet.v1 import agent_link_pb2 as pb
from tests.agent.scripted_hub import ScriptedHub, Stream, pace, serving
from tests.agent.test_heartbeat import A400, A5500, ScriptedProbe


@asynccontextmanager
async def agents(
    address: str, probes: Sequence[GpuProbe], seed: int = 0
) -> AsyncIterator[list[AgentLink]]:
    """Real links, one per probe (nodes gpu-0, gpu-1, ...), each with its own seeded jitter."""
    links = [AgentLink(address, Identity(f"gpu-{n}", f"id-{n}"), probe,
                       rng=random.Random(seed + n)) for n, probe in enumerate(probes)]  # fmt: skip
    stop = asyncio.Event()
    running = [asyncio.create_task(link.run(stop)) for link in links]
    try:
        yield links
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*running), 10)


def scenario(
    hub: ScriptedHub, probes: Sequence[GpuProbe], play: Callable[[list[Stream]], Awaitable[None]]
) -> None:
    async def main() -> None:
        async with serving(hub) as address, agents(address, probes):
            async with asyncio.timeout(10):
                while len(hub.streams) < len(probes):
                    hub.joined.clear()
                    await hub.joined.wait()
            await play(list(hub.streams))

    asyncio.run(main())


def crowded(times: Sequence[float], window: float) -> int:
    """The most of `times` within any span of `window` seconds."""
    ordered = sorted(times)
    return max(sum(1 for t in ordered[i:] if t - start < window) for i, start in enumerate(ordered))


def test_beats_keep_the_interval_and_the_first_falls_within_one() -> None:
    interval = 0.25

    async def play(streams: list[Stream]) -> None:
        [stream] = streams
        beats = await stream.beat(9)
        assert 0 <= beats[0].at - stream.welcomed_at < interval + 0.15
        assert [b.message.seq for b in beats] == list(range(1, 10))
        span = beats[8].at - beats[1].at  # seven slots, each beat +-10 % around its own
        assert 7 * interval - 0.4 * interval - 0.05 <= span <= 7 * interval + 0.4 * interval + 0.3

    scenario(ScriptedHub(interval), [ScriptedProbe(A5500)], play)


def test_a_shorter_pace_applies_at_once_and_a_longer_one_from_the_next_beat(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="agent.link")
    assert random.Random(0).random() > 0.5  # the welcome's first beat would come after 15 s

    async def play(streams: list[Stream]) -> None:
        [stream] = streams
        stream.send(pace(0.2))
        beats = await stream.beat(4, within=3)  # not after 15 s: the wait was re-scheduled
        assert beats[3].at - stream.welcomed_at < 2.0
        stream.send(pace(2.0))
        stream.send(pace(2.0))  # the same pace again: no change, no line
        seen = len(stream.beats)
        await stream.beat(seen + 1, within=1.0)  # the pending beat keeps its time
        await asyncio.sleep(1.0)  # at 0.2 s four more would come
        assert len(stream.beats) - seen <= 2
        beats = await stream.beat(len(stream.beats) + 1, within=4)
        assert beats[-1].at - beats[-2].at >= 1.5

    scenario(ScriptedHub(30.0), [ScriptedProbe(A5500)], play)
    paced = [r.getMessage() for r in caplog.records if "paced this agent" in r.getMessage()]
    assert len(paced) == 2, paced
    assert "heartbeat every 0.2 s" in paced[0] and "was every 30 s" in paced[0]
    assert "heartbeat every 2 s" in paced[1]


def test_fifty_agents_do_not_beat_in_phase() -> None:
    interval = 1.0

    async def play(streams: list[Stream]) -> None:
        await asyncio.gather(*(stream.beat(2) for stream in streams))
        offsets = [s.beats[0].at - s.welcomed_at for s in streams]
        assert all(0 <= offset < interval + 0.3 for offset in offsets), offsets
        # In phase (every agent one interval after its welcome) all 50 would share 0.1 s; a
        # stall of this one loop (hub and agents) under load can bunch a few arrivals.
        assert max(offsets) - min(offsets) > interval / 2
        assert crowded(offsets, 0.1) <= 25
        assert crowded([s.beats[1].at for s in streams], 0.1) <= 25

    scenario(ScriptedHub(interval), [ScriptedProbe(A400) for _ in range(50)], play)


def test_telemetry_rides_only_when_it_moved_or_is_due() -> None:
    probe = ScriptedProbe(A5500, A400)
    telemetry_s = 1.5

    async def play(streams: list[Stream]) -> None:
        [stream] = streams
        first = (await stream.beat(3))[0].message
        assert [g.index for g in first.gpus] == [0, 1] and not first.telemetry_unchanged
        for beat in stream.beats[1:3]:  # the probe says the same
            assert beat.message.telemetry_unchanged and not beat.message.gpus

        probe.result = replace(probe.result, gpus=(replace(A5500, utilization_percent=44), A400))
        seen = len(stream.beats)
        for beat in (await stream.beat(seen + 3))[seen:]:  # 9 points from what was sent
            assert beat.message.telemetry_unchanged and not beat.message.gpus

        probe.result = replace(probe.result, gpus=(replace(A5500, utilization_percent=45), A400))
        seen = len(stream.beats)
        moved = (await stream.beat(seen + 2))[seen:]
        sent = [b for b in moved if b.message.gpus]  # the next beat (or one then in flight)
        assert sent and sent[0].message.gpus[0].utilization_percent == 45

        refresh = None
        async with asyncio.timeout(telemetry_s + 2):
            while refresh is None:
                await stream.beat(len(stream.beats) + 1)
                if stream.beats[-1].message.gpus:
                    refresh = stream.beats[-1]
        quiet = stream.beats[stream.beats.index(sent[0]) + 1 : -1]
        assert len(quiet) >= 3 and all(b.message.telemetry_unchanged for b in quiet)
        assert refresh.at - sent[0].at >= telemetry_s - 0.1  # due again, though unchanged
        assert refresh.message.gpus[0].utilization_percent == 45

    scenario(ScriptedHub(0.15, telemetry_s), [probe], play)


def test_a_node_without_gpus_says_so_once_then_unchanged() -> None:
    async def play(streams: list[Stream]) -> None:
        [stream] = streams
        beats = await stream.beat(4)
        assert [(len(b.message.gpus), b.message.telemetry_unchanged) for b in beats] == [
            (0, False), (0, True), (0, True), (0, True)]  # fmt: skip

    scenario(ScriptedHub(0.1), [NoProbe()], play)


def test_telemetry_with_every_beat_when_the_hub_asks_for_it() -> None:
    async def play(streams: list[Stream]) -> None:
        [stream] = streams
        beats = await stream.beat(4)
        assert all(len(b.message.gpus) == 1 and not b.message.telemetry_unchanged for b in beats)

    scenario(ScriptedHub(0.1, telemetry_s=0), [ScriptedProbe(A400)], play)


def test_a_lost_link_is_redialled_at_a_random_point_of_an_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a goodbye or a broken stream, twenty agents that held their links redial spread
    over the heartbeat interval, not all within the same moment."""
    monkeypatch.setattr(agent_link, "STABLE_S", 0.3)  # a link that held, in test time
    interval = 2.0
    hub = ScriptedHub(interval)
    count = 20

    async def play(streams: list[Stream]) -> None:
        await asyncio.sleep(0.5)
        loop = asyncio.get_running_loop()
        lost_at = loop.time()
        for stream in streams:
            if int(stream.node.removeprefix("gpu-")) % 2:
                stream.abort()
            else:
                stream.send(pb.HubMessage(goodbye=pb.Goodbye(reason="hub shutting down")))
        async with asyncio.timeout(interval + 5):
            while len(hub.streams) < 2 * count:
                hub.joined.clear()
                await hub.joined.wait()
        redials = {s.node: s.welcomed_at - lost_at for s in hub.streams[count:]}
        assert len(redials) == count
        assert all(0 <= delay < interval + 0.5 for delay in redials.values()), redials
        for parity in (0, 1):  # after a goodbye, and after a broken stream
            delays = [d for node, d in redials.items() if int(node[4:]) % 2 == parity]
            assert max(delays) - min(delays) > interval / 2, delays  # not 0.25-0.5 s for all
        assert crowded(list(redials.values()), 0.1) <= 8

    scenario(hub, [ScriptedProbe(A400) for _ in range(count)], play)
