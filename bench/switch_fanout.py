"""Time from a `switch --all` to the first node starting its drain, with many agents.

    python -m bench.switch_fanout --agents 50
    python -m bench.switch_fanout --agents 3     # smallest, a few seconds

A real hub (test configurations) and one process running `--agents` real agents (AgentLink,
TaskRunner, the task kinds, ProjectStore). Only the edge is simulated: podman and podman-compose
answer from a table instead of starting containers, and one local HTTP server stands in for
every model server (healthy, nothing in flight). Every agent starts out running `alpha`;
the bench switches them all to `beta` at once and prints when the first drain began and
when the last node was done.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import grpc

from agent.compose import Completed, Podman, compose_name
from agent.health import HealthMonitor
from agent.link import AgentLink, ChannelFactory, Identity
from agent.main import task_kinds
from agent.probes import NoProbe
from agent.projects import ProjectStore
from agent.tasks.context import Running, TaskContext
from agent.tasks.drain import Drain, DrainSpec
from agent.tasks.outcome import Outcome
from agent.tasks.runner import TaskRunner
from bench.common import REPO, exited, free_port, hub_stub, spawn, start_hub, stop, wait
from gpufleet.channel import SETTINGS
from gpufleet.policy import Policy
from gpufleet.v1 import hub_pb2
from hub.configs import load_configuration

CONFIGS = REPO / "tests" / "fixtures" / "switch-configs"


class ScriptedPodman:
    """podman / podman-compose at the edge: a table of running projects per host."""

    def __init__(self) -> None:
        self.running: set[str] = set()

    async def __call__(self, argv: list[str], env: Mapping[str, str], limit_s: float
                       ) -> Completed:  # fmt: skip
        if "ps" in argv:
            project = argv[-1].split("=", 2)[-1]
            entries = [{"Id": f"id-{project}", "State": "running",
                        "Labels": {"com.docker.compose.service": "web"}}]  # fmt: skip
            return Completed(0, json.dumps(entries if project in self.running else []), "")
        project = argv[argv.index("-p") + 1]
        (self.running.add if "up" in argv else self.running.discard)(project)
        return Completed(0, "", "")


async def model_server(port: int) -> asyncio.Server:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = (await reader.readuntil(b"\r\n\r\n")).decode()
        body = b"test_requests_running 0\n" if "/m/metrics" in request else b"ok\n"
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                     % (len(body), body))  # fmt: skip
        await writer.drain()
        writer.close()

    return await asyncio.start_server(answer, "127.0.0.1", port)


async def simulate(hub: str, count: int, work: Path, port: int) -> None:
    server = await model_server(port)
    env = {"WEB_PORT": str(port), "METRICS_DIR": str(work)}
    alpha = load_configuration(CONFIGS / "alpha.yaml")
    channels = [grpc.aio.insecure_channel(hub, options=SETTINGS.client_options()) for _ in range(5)]

    def shared(channel: grpc.aio.Channel) -> ChannelFactory:
        @asynccontextmanager
        async def borrow() -> AsyncIterator[grpc.aio.Channel]:
            yield channel

        return borrow

    links = []
    for i in range(count):
        node = f"sim-{i:03d}"
        store = ProjectStore(work / node, "none", Policy(allow_bind_roots=(str(work),)), env)
        store.write("alpha", alpha.text, alpha.digest)  # this host runs alpha
        edge = ScriptedPodman()
        edge.running.add(compose_name(node, "alpha"))
        podman = Podman(node, env, run=edge)
        # Health from the model server, as a real agent checks it: ready only when it answers.
        monitor = HealthMonitor(store, podman, env)
        context = TaskContext.create(store, podman, NoProbe(), env, monitor)
        tasks = TaskRunner({**task_kinds(), "drain": TimedDrain()}, context)
        links.append(AgentLink(hub, Identity(node, f"id-{node}"), NoProbe(),
                               channel=shared(channels[i % 5]), tasks=tasks,
                               monitor=monitor))  # fmt: skip
    stop = asyncio.Event()
    await asyncio.gather(*(link.run(stop) for link in links))
    server.close()


class TimedDrain(Drain):
    async def run(self, ctx: TaskContext, spec: DrainSpec, check: bool) -> Outcome[Running]:
        print(f"drain {time.time():.6f}", flush=True)
        return await super().run(ctx, spec, check)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--simulate", metavar="HUB", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.simulate:
        asyncio.run(simulate(args.simulate, args.agents, args.work, args.port))
        return
    work = Path(tempfile.mkdtemp(prefix="gpufleet-bench-fanout-"))
    hub, address = start_hub(work / "hub", "--configs", str(CONFIGS))
    sim = None
    status = "unknown"
    try:
        sim = spawn(
            ["-m", "bench.switch_fanout", "--simulate", address, "--agents", str(args.agents),
             "--work", str(work / "hosts"), "--port", str(free_port())],
            log=work / "simulator.log", stdout=subprocess.PIPE,
        )  # fmt: skip
        stub = hub_stub(address)

        def all_ready_on_alpha() -> bool:
            nodes = stub.GetStatus(hub_pb2.GetStatusRequest(), timeout=10).nodes
            ready = sum(n.state == "ready" and n.configuration == "alpha" for n in nodes)
            return bool(ready == args.agents)

        wait(all_ready_on_alpha, 120, sim, hub)
        started = time.time()
        reply = stub.Switch(hub_pb2.SwitchRequest(
            configuration="beta", targets=hub_pb2.Targets(all=True)), timeout=30)  # fmt: skip
        for event in stub.WatchOperation(hub_pb2.WatchOperationRequest(id=reply.id)):
            if event.HasField("operation"):
                status = event.operation.status
        finished = time.time()
        assert sim.stdout is not None
        drained = sim.stdout.readline().split()
        if not drained:
            ended = sim.poll() is not None
            raise SystemExit(f"no drain reported: {exited(sim) if ended else 'none began'}")
        first_drain = float(drained[1])
        print(f"agents                     {args.agents} (one process, podman at the edge)")
        print(f"switch --all to 1st drain  {1000 * (first_drain - started):.0f} ms")
        print(f"switch --all to all done   {finished - started:.2f} s ({status})")
        if status != "succeeded":
            raise SystemExit(f"the switch ended {status}; see {work / 'simulator.log'}")
    finally:
        stop(sim, hub)
        if status == "succeeded":
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
