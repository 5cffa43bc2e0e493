"""The agent's cost per heartbeat on an 8-GPU host, and the bytes a heartbeat takes.

    python -m bench.agent_heartbeat --interval 1 --window 60
    python -m bench.agent_heartbeat --interval 0.5 --window 2     # smallest, a few seconds

Runs a real hub and a real agent whose pynvml loads the simulated NVML (tests/support) with
eight H100s, so every heartbeat does the full NVML probe. Prints the agent's RSS, its CPU
time per heartbeat, the probe's own time, and the wire size of a hello and a heartbeat.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import REPO, hub_stub, proc_stats, ready_count, start_agent, start_hub, stop, wait
from gpufleet.v1 import agent_link_pb2 as pb
from tests.support.nvml import FakeGpu, FakeHost, build_library, nvml_env, write_host


def h100_host() -> FakeHost:
    return FakeHost([
        FakeGpu("NVIDIA H100 80GB HBM3", f"GPU-{i:08x}-4c2e-8f1a-b5d7-a9e3c4f7b1{i:02x}",
                81559, 72316, (9, 0), utilization_gpu=87, temperature_c=61, power_mw=612000,
                power_limit_mw=700000, pci_bus_id=f"00000000:{0x18 + i:02X}:00.0",
                processes=[(10_000 + i, 72000)])
        for i in range(8)
    ])  # fmt: skip


async def measure_in_process(samples: int) -> dict[str, float]:
    """Run inside a process whose environment loads the simulated NVML."""
    from agent.link import AgentLink, Identity
    from agent.probes.nvml import NvmlProbe

    probe = NvmlProbe()
    link = AgentLink("unused:1", Identity("bench-h100", "bench-id", {"role": "chat"}), probe)
    hello = pb.AgentMessage(hello=await link.hello())
    beat = pb.AgentMessage(heartbeat=await link.heartbeat(1))
    started = time.perf_counter()
    for _ in range(samples):
        probe.inventory()
    probe_ms = (time.perf_counter() - started) * 1000 / samples
    return {"hello_bytes": hello.ByteSize(), "heartbeat_bytes": beat.ByteSize(),
            "probe_ms": probe_ms, "gpus": len(beat.heartbeat.gpus)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=1.0, help="heartbeat seconds")
    parser.add_argument("--window", type=float, default=60.0, help="seconds to measure")
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.in_process:
        print(json.dumps(asyncio.run(measure_in_process(200))))
        return

    with tempfile.TemporaryDirectory(prefix="gpufleet-bench-agent-") as tmp:
        measure(Path(tmp), args.interval, args.window)


def measure(work: Path, interval: float, window: float) -> None:
    host_file = work / "host.nvml"
    write_host(host_file, h100_host())
    env = {**os.environ, **nvml_env(build_library(work / "lib"), host_file)}
    sizes = json.loads(subprocess.run(
        [sys.executable, "-m", "bench.agent_heartbeat", "--in-process"],
        env=env, cwd=REPO, check=True, capture_output=True, text=True,
    ).stdout)  # fmt: skip

    hub, address = start_hub(work / "hub", "--heartbeat-interval", str(interval))
    agent = None
    try:
        agent = start_agent(address, "bench-h100", work / "agent", "--gpu-probe", "nvml", env=env)
        stub = hub_stub(address)
        wait(lambda: ready_count(stub) == 1, 30, agent, hub)
        time.sleep(2 * interval)
        _, cpu0 = proc_stats(agent.pid)
        t0 = time.monotonic()
        time.sleep(window)
        elapsed = time.monotonic() - t0
        rss, cpu1 = proc_stats(agent.pid)
        beats = elapsed / interval
        print(f"host                       {sizes['gpus']} x simulated H100 over pynvml")
        print(f"agent RSS                  {rss / 1024:.1f} MiB")
        print(f"agent CPU per heartbeat    {1000 * (cpu1 - cpu0) / beats:.2f} ms "
              f"({100 * (cpu1 - cpu0) / elapsed:.2f} % of a core at one beat per "
              f"{interval:g} s, over {elapsed:.0f} s)")  # fmt: skip
        print(f"NVML probe, 8 GPUs         {sizes['probe_ms']:.2f} ms per full probe")
        print(f"heartbeat on the wire      {sizes['heartbeat_bytes']} bytes (protobuf payload)")
        print(f"hello on the wire          {sizes['hello_bytes']} bytes")
    finally:
        stop(agent, hub)


if __name__ == "__main__":
    main()
