"""Hub resident memory and CPU with many agents connected and heartbeating.

    python -m bench.hub_agents --agents 1000 --heartbeat 5 --window 60
    python -m bench.hub_agents --agents 5 --heartbeat 0.5 --window 1 --channels 2   # smallest

Starts a real hub (SQLite in a temporary state dir) and one simulator process that runs
`--agents` real AgentLink clients (agent/link.py) over a few shared gRPC channels, each with
a shipped inventory. Prints the time until all are ready, then the hub's RSS and CPU use over
the measurement window.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc

from agent.link import AgentLink, ChannelFactory, Identity
from agent.probes import StaticProbe
from bench.common import REPO, hub_stub, proc_stats, ready_count, spawn, start_hub, stop, wait
from gpufleet.channel import SETTINGS

INVENTORIES = sorted((REPO / "configs" / "inventories").glob("*.yaml"))


async def simulate(hub: str, count: int, channels: int) -> None:
    pool = [
        grpc.aio.insecure_channel(hub, options=SETTINGS.client_options()) for _ in range(channels)
    ]

    def shared(channel: grpc.aio.Channel) -> ChannelFactory:
        @asynccontextmanager
        async def borrow() -> AsyncIterator[grpc.aio.Channel]:
            yield channel

        return borrow

    stop = asyncio.Event()
    links = [
        AgentLink(
            hub,
            Identity(f"sim-{i:05d}", f"sim-id-{i}", {"bench": "1"}),
            StaticProbe(INVENTORIES[i % len(INVENTORIES)]),
            channel=shared(pool[i % channels]),
        )
        for i in range(count)
    ]
    await asyncio.gather(*(link.run(stop) for link in links))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--heartbeat", type=float, default=5.0)
    parser.add_argument("--window", type=float, default=60.0, help="seconds to measure")
    parser.add_argument("--channels", type=int, default=10)
    parser.add_argument("--simulate", metavar="HUB", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.simulate:
        asyncio.run(simulate(args.simulate, args.agents, args.channels))
        return

    work = Path(tempfile.mkdtemp(prefix="gpufleet-bench-"))
    hub, address = start_hub(work / "hub", "--heartbeat-interval", str(args.heartbeat))
    sim = None
    done = False
    try:
        stub = hub_stub(address)
        idle_rss, _ = proc_stats(hub.pid)
        started = time.monotonic()
        sim = spawn(
            ["-m", "bench.hub_agents", "--simulate", address, "--agents", str(args.agents),
             "--channels", str(args.channels)],
            log=work / "simulator.log",
        )  # fmt: skip
        wait(lambda: ready_count(stub) == args.agents, 300, sim, hub)
        connect_s = time.monotonic() - started
        time.sleep(args.heartbeat)  # settle into the steady heartbeat rhythm
        _, cpu0 = proc_stats(hub.pid)
        _, sim_cpu0 = proc_stats(sim.pid)
        t0 = time.monotonic()
        time.sleep(args.window)
        elapsed = time.monotonic() - t0
        rss1, cpu1 = proc_stats(hub.pid)
        sim_rss1, sim_cpu1 = proc_stats(sim.pid)
        still_ready = ready_count(stub)
        list_t0 = time.monotonic()
        ready_count(stub)
        list_ms = (time.monotonic() - list_t0) * 1000
        beats = args.agents * elapsed / args.heartbeat
        print(
            f"agents                     {args.agents} over {args.channels} channels, "
            f"heartbeat every {args.heartbeat:g} s"
        )
        print(f"all ready after            {connect_s:.1f} s")
        print(f"still ready after window   {still_ready}/{args.agents}")
        print(f"hub RSS idle               {idle_rss / 1024:.1f} MiB")
        print(
            f"hub RSS connected          {rss1 / 1024:.1f} MiB "
            f"({(rss1 - idle_rss) / args.agents:.1f} KiB per agent)"
        )
        print(
            f"hub CPU                    {100 * (cpu1 - cpu0) / elapsed:.1f} % of one core "
            f"over {elapsed:.0f} s (~{beats / elapsed:.0f} heartbeats/s, "
            f"{1e6 * (cpu1 - cpu0) / beats:.0f} us CPU per heartbeat)"
        )
        print(f"{f'ListNodes ({args.agents} nodes)':<26} {list_ms:.0f} ms")
        print(
            f"simulator RSS / CPU        {sim_rss1 / 1024:.1f} MiB / "
            f"{100 * (sim_cpu1 - sim_cpu0) / elapsed:.1f} %"
        )
        done = True
    finally:
        stop(sim, hub)
        if done:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
