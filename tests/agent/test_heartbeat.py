"""Heartbeats carry the inventory only when it changed, and telemetry every time until the hub
paces them (then when it moved from what was last sent, or is due)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from agent.link import AgentLink, Identity
from agent.pace import Pace
from agent.probes import GpuInfo, ProbeResult
from gpufleet.v1 import types_pb2

A5500 = GpuInfo(0, "GPU-1", "NVIDIA RTX A5500", "nvidia", 24564, 19304, "8.6",
                utilization_percent=35, temperature_c=54.0, power_draw_w=61.0)  # fmt: skip
A400 = GpuInfo(1, "GPU-2", "NVIDIA RTX A400", "nvidia", 4094, 312, "8.6", power_limit_w=50.0)


class ScriptedProbe:
    """A host whose probe answers are set by the test (the edge: no GPU here)."""

    name = "nvml"

    def __init__(self, *gpus: GpuInfo) -> None:
        self.result = ProbeResult(self.name, gpus)

    def inventory(self) -> ProbeResult:
        return self.result


def test_inventory_is_resent_only_when_it_changes() -> None:
    async def scenario() -> None:
        probe = ScriptedProbe(A5500, A400)
        link = AgentLink("unused:1", Identity("gpu-a", "id"), probe)
        hello = await link.hello()
        assert [g.name for g in hello.inventory.gpus] == ["NVIDIA RTX A5500", "NVIDIA RTX A400"]

        first = await link.heartbeat(1)
        assert not first.HasField("inventory")
        assert [(t.index, t.memory_used_mb) for t in first.gpus] == [(0, 19304), (1, 312)]
        assert first.gpus[0].utilization_percent == 35
        assert not first.gpus[1].HasField("utilization_percent")  # n/a, not 0

        busier = replace(A5500, memory_used_mb=20000, utilization_percent=99)
        probe.result = ProbeResult("nvml", (busier, A400))
        second = await link.heartbeat(2)
        assert not second.HasField("inventory")  # telemetry alone is no inventory change
        assert second.gpus[0].utilization_percent == 99

        lost = replace(A400, state="lost")
        probe.result = ProbeResult("nvml", (busier, lost))
        third = await link.heartbeat(3)
        assert not third.HasField("inventory")  # lost rides on telemetry
        assert third.gpus[1].state == types_pb2.GPU_STATE_LOST

        probe.result = ProbeResult("nvml", (busier,))  # a GPU went away
        fourth = await link.heartbeat(4)
        assert [g.index for g in fourth.inventory.gpus] == [0]
        assert not (await link.heartbeat(5)).HasField("inventory")

    asyncio.run(scenario())


def test_a_failing_probe_keeps_the_link_and_the_last_inventory() -> None:
    class FlakyProbe(ScriptedProbe):
        broken = False

        def inventory(self) -> ProbeResult:
            if self.broken:
                raise RuntimeError("driver hiccup")
            return self.result

    async def scenario() -> None:
        probe = FlakyProbe(A5500, A400)
        link = AgentLink("unused:1", Identity("gpu-a", "id"), probe)
        await link.hello()
        probe.broken = True
        beat = await link.heartbeat(1)
        assert not beat.HasField("inventory") and len(beat.gpus) == 2

    asyncio.run(scenario())


class ScriptedPreflight:
    def __init__(self) -> None:
        self.found: tuple[str, ...] = ("podman not found on PATH: install Debian's package podman",)

    async def problems(self) -> tuple[str, ...]:
        return self.found

    async def current(self, wait: float) -> tuple[str, ...]:
        return await self.problems()

    def stale(self) -> None:
        pass


def test_preflight_rides_in_the_hello_and_in_a_heartbeat_when_it_changes() -> None:
    async def scenario() -> None:
        checks = ScriptedPreflight()
        link = AgentLink("unused:1", Identity("gpu-a", "id"), ScriptedProbe(A5500),
                         preflight=checks)  # fmt: skip
        hello = await link.hello()
        assert list(hello.inventory.preflight) == list(checks.found)
        assert not (await link.heartbeat(1)).HasField("inventory")
        checks.found = ()  # the operator installed podman
        fixed = await link.heartbeat(2)
        assert fixed.HasField("inventory") and list(fixed.inventory.preflight) == []
        assert [g.index for g in fixed.inventory.gpus] == [0]
        assert not (await link.heartbeat(3)).HasField("inventory")

    asyncio.run(scenario())


def test_telemetry_is_compared_with_what_was_last_sent() -> None:
    """Small moves add up: each below the threshold, together past it."""

    async def scenario() -> None:
        probe = ScriptedProbe(A5500, A400)
        link = AgentLink("unused:1", Identity("gpu-a", "id"), probe)
        link.pace = Pace(5.0, telemetry_s=600.0)
        await link.hello()
        assert len((await link.heartbeat(1)).gpus) == 2
        sent = []
        for seq, used in enumerate((19334, 19364, 19368), start=2):  # +30, +60, +64 MiB
            probe.result = ProbeResult("nvml", (replace(A5500, memory_used_mb=used), A400))
            beat = await link.heartbeat(seq)
            assert beat.telemetry_unchanged is not bool(beat.gpus)
            sent.append(beat.gpus[0].memory_used_mb if beat.gpus else None)
        assert sent == [None, None, 19368]
        assert (await link.heartbeat(5)).telemetry_unchanged
        await link.hello()  # a new stream: its first beat carries the telemetry again
        assert len((await link.heartbeat(1)).gpus) == 2

    asyncio.run(scenario())
