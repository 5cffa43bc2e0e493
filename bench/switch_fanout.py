"""Time from a `switch --all` to each node's first task, with many agents.

    python -m bench.switch_fanout --agents 1000 --procs 4
    python -m bench.switch_fanout --agents 1000 --procs 4 --check
    python -m bench.switch_fanout --agents 3     # smallest, a few seconds

A real hub (test configurations) and `--procs` processes running `--agents` real agents
between them (AgentLink, TaskRunner, the task kinds, ProjectStore). Only the edge is
simulated: podman and podman-compose answer from a table instead of starting containers, and
one local HTTP server per process stands in for every model server (healthy, nothing in
flight). Every agent starts out running `alpha`; the bench switches them all to `beta` at once
(`--serial` unlimited) and prints when the first drain began, the p50/p99/max of each agent's
first task after the Switch call (the wall clock is shared: one machine), the whole switch,
and the hub's CPU seconds per node. With `--check` nothing runs on the agents: the times are
those of each node's result event instead. `--profile FILE` records the hub with py-spy
during the switch (py-spy on PATH).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import math
import shutil
import signal
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC
from pathlib import Path
from typing import Any, ClassVar, TextIO

import grpc

from agent.compose import Completed, Podman, compose_name
from agent.health import HealthMonitor
from agent.link import AgentLink, ChannelFactory, Identity
from agent.main import task_kinds
from agent.probes import NoProbe
from agent.projects import ProjectStore
from agent.tasks.context import TaskContext
from agent.tasks.runner import Registry, TaskRunner
from bench.common import REPO, free_port, hub_stub, proc_stats, spawn, start_hub, stop, wait
from gpufleet.channel import SETTINGS
from gpufleet.policy import Policy
from gpufleet.v1 import agent_link_pb2 as pb
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


class SimulatedStore(ProjectStore):
    """A ProjectStore whose agents share each expansion of a compose document.

    podman-compose's expansion builds an Enum and a dataclass at each variable it meets
    (tens of milliseconds per document); a real agent pays that on its own host, but here
    thousands of agents share two cores: their starts and health checks alone starve the
    simulators' event loops, heartbeats come late and the hub rightly closes the streams
    mid-switch (the failed 2,000-agent switch). A document that names a COMPOSE_ variable
    (which differs per host) is expanded for each agent as before."""

    shared: ClassVar[dict[tuple[str, str], Any]] = {}

    def expanded(self, name: str, document: Any) -> Any:
        text = json.dumps(document, sort_keys=True, default=str)
        if "COMPOSE_" in text:
            return super().expanded(name, document)
        variables = {k: v for k, v in self.variables(name).items() if not k.startswith("COMPOSE_")}
        key = (text, json.dumps(variables, sort_keys=True))
        if key not in self.shared:
            self.shared[key] = super().expanded(name, document)
        return copy.deepcopy(self.shared[key])


class FirstTask(TaskRunner):
    """A TaskRunner that writes down when its agent got its first task (wall clock)."""

    def __init__(self, kinds: Registry, context: TaskContext, node: str, out: TextIO) -> None:
        super().__init__(kinds, context)
        self.node, self.out, self.seen = node, out, False

    def submit(self, request: pb.TaskRequest) -> None:
        if not self.seen:
            self.seen = True
            self.out.write(f"{self.node} {time.time():.6f} {request.WhichOneof('task')}\n")
        super().submit(request)


def node_name(i: int) -> str:
    return f"sim-{i:05d}"


async def simulate(hub: str, first: int, count: int, work: Path, port: int, out: Path) -> None:
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
    with out.open("a", buffering=1) as arrivals:
        for i in range(first, first + count):
            node = node_name(i)
            store = SimulatedStore(work / node, "none", Policy(allow_bind_roots=(str(work),)), env)
            store.write("alpha", alpha.text, alpha.digest)  # this host runs alpha
            edge = ScriptedPodman()
            edge.running.add(compose_name(node, "alpha"))
            podman = Podman(node, env, run=edge)
            # Health from the model server, as a real agent checks it: ready when it answers.
            monitor = HealthMonitor(store, podman, env)
            context = TaskContext.create(store, podman, NoProbe(), env, monitor)
            tasks = FirstTask(task_kinds(), context, node, arrivals)
            links.append(AgentLink(hub, Identity(node, f"id-{node}"), NoProbe(),
                                   channel=shared(channels[i % 5]), tasks=tasks,
                                   monitor=monitor))  # fmt: skip
        stop = asyncio.Event()
        await asyncio.gather(*(link.run(stop) for link in links))
    server.close()


def spread(agents: int, procs: int) -> list[tuple[int, int]]:
    """(first index, count) of the agents of each simulator process."""
    procs = max(1, min(procs, agents))
    base, extra = divmod(agents, procs)
    found, first = [], 0
    for p in range(procs):
        count = base + (p < extra)
        found.append((first, count))
        first += count
    return found


def quantiles(values: list[float]) -> str:
    if not values:
        return "none"
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]

    return f"{at(0.5):.2f} / {at(0.99):.2f} / {ordered[-1]:.2f} s"


def arrivals(work: Path) -> dict[str, tuple[float, str]]:
    """Each agent's first task: (wall time, task kind)."""
    found: dict[str, tuple[float, str]] = {}
    for path in work.glob("first-*.txt"):
        for line in path.read_text().splitlines():
            node, at, kind = line.split()
            found[node] = (float(at), kind)
    return found


def record_hub(pid: int, out: Path) -> subprocess.Popen[bytes] | None:
    """py-spy recording the hub until stopped (None: no py-spy)."""
    spy = shutil.which("py-spy")
    if spy is None:
        print("--profile: py-spy is not on PATH (pip install py-spy); not profiling")
        return None
    return subprocess.Popen([spy, "record", "--pid", str(pid), "--rate", "200", "--threads",
                             "--format", "speedscope", "--output", str(out), "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--procs", type=int, default=1, help="simulator processes")
    parser.add_argument("--check", action="store_true", help="switch --check: nothing runs")
    parser.add_argument("--profile", type=Path, help="py-spy speedscope file of the hub")
    parser.add_argument("--simulate", metavar="HUB", help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.simulate:
        asyncio.run(simulate(args.simulate, args.first, args.agents, args.work, args.port,
                             args.out))  # fmt: skip
        return
    work = Path(tempfile.mkdtemp(prefix="gpufleet-bench-fanout-"))
    hub, address = start_hub(work / "hub", "--configs", str(CONFIGS))
    sims: list[subprocess.Popen[str]] = []
    spy = None
    status = "unknown"
    try:
        for p, (first, count) in enumerate(spread(args.agents, args.procs)):
            sims.append(spawn(
                ["-m", "bench.switch_fanout", "--simulate", address, "--first", str(first),
                 "--agents", str(count), "--work", str(work / "hosts"),
                 "--port", str(free_port()), "--out", str(work / f"first-{p}.txt")],
                log=work / f"simulator-{p}.log",
            ))  # fmt: skip
        stub = hub_stub(address)

        seen: Counter[tuple[str, str]] = Counter()

        def all_ready_on_alpha() -> bool:
            seen.clear()
            token = ""
            while True:  # every page
                page = stub.GetStatus(hub_pb2.GetStatusRequest(page_token=token), timeout=60)
                seen.update((n.state, n.configuration) for n in page.nodes)
                token = page.next_page_token
                if not token:
                    return bool(seen[("ready", "alpha")] == args.agents)

        try:
            wait(all_ready_on_alpha, 120 + args.agents / 10, *sims, hub)
        except SystemExit as exc:
            states = ", ".join(f"{n} {s or '-'}/{c or '-'}" for (s, c), n in seen.items())
            raise SystemExit(f"{exc} (nodes: {states or 'none'})") from None
        # The hub's first read of the configurations starts its worker process (a second or
        # more on a loaded machine): measured here, apart from the switch.
        began = time.time()
        stub.ListConfigurations(hub_pb2.ListConfigurationsRequest(), timeout=60)
        warm = time.time() - began
        if args.profile is not None:
            spy = record_hub(hub.pid, args.profile)
        cpu_before = proc_stats(hub.pid)[1]
        started = time.time()
        reply = stub.Switch(hub_pb2.SwitchRequest(
            configuration="beta", targets=hub_pb2.Targets(all=True), check=args.check,
        ), timeout=60)  # fmt: skip
        answered = time.time() - started
        results: list[float] = []
        done_at = last_result = 0.0  # when the hub made the done event; the last result came
        for event in stub.WatchOperation(hub_pb2.WatchOperationRequest(id=reply.id)):
            if event.HasField("operation"):
                status = event.operation.status
                done_at = event.at.ToDatetime(UTC).timestamp()
            elif event.step == "result":
                last_result = time.time()
            if event.step == "result":
                results.append(event.at.ToDatetime(UTC).timestamp() - started)
        finished = time.time()
        cpu = proc_stats(hub.pid)[1] - cpu_before
        found = arrivals(work)
        firsts = [at - started for at, _ in found.values()]
        drains = [at - started for at, kind in found.values() if kind == "drain"]
        print(f"agents                     {args.agents} ({len(sims)} processes, "
              "podman at the edge)")  # fmt: skip
        print(f"configs worker start       {1000 * warm:.0f} ms (first read, before the switch)")
        print(f"Switch call answered       {1000 * answered:.0f} ms")
        if not args.check:
            if not drains:
                raise SystemExit(f"no drain reported; see {work}")
            print(f"switch --all to 1st drain  {1000 * min(drains):.0f} ms")
            print(f"first task p50/p99/max     {quantiles(firsts)} "
                  f"({len(firsts)} of {args.agents} agents)")  # fmt: skip
        print(f"node result p50/p99/max    {quantiles(results)} ({len(results)} nodes)")
        print(f"switch --all to all done   {finished - started:.2f} s ({status})")
        # Where the wait after the last result goes: the hub ending the operation (its done
        # event made) or the stream of every event to this client.
        print(f"done made / last result in {done_at - started:.2f} / {last_result - started:.2f} s "
              "(the hub's done event; the last node result received here)")  # fmt: skip
        print(f"hub CPU during the switch  {cpu:.1f} s "
              f"({1000 * cpu / max(1, args.agents):.1f} ms per node)")  # fmt: skip
        if status != "succeeded":
            raise SystemExit(f"the switch ended {status}; see {work}")
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        stop(*sims, hub)
        if status == "succeeded":
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
