"""Trust costs: join latency, and the hub with many agents each on its own mutual-TLS link.

    python -m bench.enroll --agents 300 --heartbeat 5 --window 30
    python -m bench.enroll --agents 3 --heartbeat 0.5 --window 1     # smallest, a few seconds

Starts a real TLS hub, creates a join token per agent as its admin, and runs the simulator
process: it enrolls every agent (`gpufleet.enroll.join`: key, pin check, Join RPC) one
after another, then connects them all, each over its own mutual-TLS channel with its own
certificate (the real AgentLink). Prints join latency, the time to all ready, and the hub's
RSS and CPU over the window; the same with plaintext is `python -m bench.hub_agents
--channels N` for N agents.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

from agent.link import AgentLink, Identity
from agent.probes import StaticProbe
from bench.common import (
    REPO,
    admin_credentials,
    channel,
    exited,
    proc_stats,
    ready_count,
    start_hub,
    stop,
)
from bench.common import wait as wait_for
from gpufleet.channel import SETTINGS
from gpufleet.enroll import Enrolled, join
from gpufleet.tls import TLS_OPTIONS
from gpufleet.v1 import hub_pb2_grpc, trust_pb2, trust_pb2_grpc

INVENTORY = REPO / "configs" / "inventories" / "h100x8.yaml"


def tls_factory(hub: str, enrolled: Enrolled):  # type: ignore[no-untyped-def]
    credentials = grpc.ssl_channel_credentials(enrolled.ca_pem, enrolled.key_pem, enrolled.cert_pem)
    options = [*SETTINGS.client_options(), *TLS_OPTIONS]
    return lambda: grpc.aio.secure_channel(hub, credentials, options=options)


def simulate(hub: str, tokens: list[str]) -> None:
    enrolled, took = [], []
    for i, token in enumerate(tokens):
        started = time.perf_counter()
        enrolled.append(join(hub, token, f"tls-{i:05d}"))
        took.append(time.perf_counter() - started)
    took.sort()
    p99 = took[int(0.99 * (len(took) - 1))]
    figures = {"join_median_ms": 1000 * statistics.median(took), "join_p99_ms": 1000 * p99}
    print(json.dumps(figures), flush=True)

    async def run() -> None:
        stop = asyncio.Event()
        links = [
            AgentLink(
                hub,
                Identity(f"tls-{i:05d}", f"id-{i}"),
                StaticProbe(INVENTORY),
                channel=tls_factory(hub, item),
            )
            for i, item in enumerate(enrolled)
        ]
        await asyncio.gather(*(link.run(stop) for link in links))

    asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=300)
    parser.add_argument("--heartbeat", type=float, default=5.0)
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--simulate", metavar="HUB", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.simulate:
        simulate(args.simulate, sys.stdin.read().split())
        return
    state = Path(tempfile.mkdtemp(prefix="gpufleet-bench-"))
    hub, address = start_hub(state, "--heartbeat-interval", str(args.heartbeat), secure=True)
    sim = None
    done = False
    try:
        admin = channel(address, admin_credentials(state))
        trust = trust_pb2_grpc.TrustStub(admin)
        request = trust_pb2.CreateTokenRequest(role=trust_pb2.ROLE_AGENT, ttl_seconds=3600)
        tokens = [trust.CreateToken(request, timeout=10).token for _ in range(args.agents)]
        stub = hub_pb2_grpc.HubStub(admin)
        idle_rss, _ = proc_stats(hub.pid)
        sim = subprocess.Popen(
            [sys.executable, "-m", "bench.enroll", "--simulate", address],
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert sim.stdin is not None and sim.stdout is not None
        sim.stdin.write("\n".join(tokens))
        sim.stdin.close()
        line = sim.stdout.readline()
        if not line:
            sim.wait(30)
            raise SystemExit(f"no join figures: {exited(sim)}")
        joins = json.loads(line)
        started = time.monotonic()
        wait_for(lambda: ready_count(stub) == args.agents, 300, sim, hub)
        connect_s = time.monotonic() - started
        time.sleep(args.heartbeat)
        _, cpu0 = proc_stats(hub.pid)
        t0 = time.monotonic()
        time.sleep(args.window)
        elapsed = time.monotonic() - t0
        rss1, cpu1 = proc_stats(hub.pid)
        beats = args.agents * elapsed / args.heartbeat
        print(f"agents                     {args.agents}, each on its own mutual-TLS link")
        print(f"join (in-process)          median {joins['join_median_ms']:.1f} ms, "
              f"p99 {joins['join_p99_ms']:.1f} ms")  # fmt: skip
        print(f"all ready after            {connect_s:.1f} s (after enrolling)")
        print(f"hub RSS idle / connected   {idle_rss / 1024:.1f} / {rss1 / 1024:.1f} MiB "
              f"({(rss1 - idle_rss) / args.agents:.1f} KiB per agent)")  # fmt: skip
        print(f"hub CPU                    {100 * (cpu1 - cpu0) / elapsed:.1f} % of one core "
              f"(~{beats / elapsed:.0f} heartbeats/s, "
              f"{1e6 * (cpu1 - cpu0) / beats:.0f} us CPU per heartbeat)")  # fmt: skip
        admin.close()
        done = True
    finally:
        stop(sim, hub)
        if done:
            shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
