"""One simulator process of the fan-out benchmark (bench/switch_fanout.py): its share of agents.

    python -m bench.fanout_sim --hub ADDR --first 0 --agents 1000 --work DIR --out F

Every agent is real where the benchmark measures: an AgentLink receives the tasks into a real
TaskRunner with the real task kinds, ProjectStore and HealthMonitor. Only the edge is
simulated: podman and podman-compose answer from a table, one local HTTP server per process
stands in for every model server (healthy, nothing in flight), and each agent has 4 H100s of
the static inventory (bench/fleet_sim.py), so the hub holds GPUs and the switch's capacity
check finds room, as in a real cluster.

What a real agent pays on its own host, thousands of agents here pay on the two cores the hub
is measured on, so the simulators are kept cheap where that changes nothing the hub sees:
- the configurations' health interval is long (`health_slow`), and the monitor's checks
  answer from the stand-in itself (the tasks' drain and wait_healthy ask the HTTP server, as
  an agent does): a new container is checked at once, so only idle polling is rarer;
- the monitor lists each agent's containers every LIST_EVERY_S instead of every 5 s (a task
  that changes a project has it listed again at once, as ever);
- no early beats unless `--early-check S` (an agent looks every second for a change to send
  at once; looking probes the GPUs and lists the host processes: at one look per 5 s about
  7 % of a core per 1,000 agents): what runs reaches the hub at its next regular beat; the
  tasks' results, which the switch waits for, go at once as ever;
- a compose document's expansion is shared between agents (`SimulatedStore`);
- the agents of a process share the task kinds and one channel per CHANNEL_AGENTS agents,
  and each stored compose text is parsed once per process.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, ClassVar, TextIO

import grpc
import yaml

from agent import health
from agent.compose import Completed, Podman, compose_name
from agent.health import HealthMonitor
from agent.link import AgentLink, ChannelFactory, Identity
from agent.main import task_kinds
from agent.probes import StaticProbe
from agent.probing import Reply
from agent.projects import ProjectStore
from agent.tasks.context import TaskContext
from agent.tasks.runner import Registry, TaskRunner
from bench.common import REPO
from bench.fleet_sim import INVENTORY, probe_for
from gpufleet.channel import SETTINGS
from gpufleet.policy import Policy
from gpufleet.v1 import agent_link_pb2 as pb
from hub.configs import load_configuration

FIXTURES = REPO / "tests" / "fixtures" / "switch-configs"
CONFIGS = ("alpha", "beta")
# Between switches a healthy service is polled this often (the test configurations' 0.2 s
# is 1 s at the monitor's floor: 10,000 HTTP checks a second on the benchmark's machine).
HEALTH_INTERVAL_S = 30.0
LIST_EVERY_S = 60.0  # agent.health.LIST_EVERY_S in the simulators
CHANNEL_AGENTS = 100  # agents per shared channel (one TCP connection to the hub)
EARLY_CHECK_S = 0.0


def health_slow(target: Path) -> Path:
    """The test configurations alpha and beta with HEALTH_INTERVAL_S between health checks,
    written to `target` (the hub's --configs)."""
    target.mkdir(parents=True, exist_ok=True)
    for name in CONFIGS:
        text = (FIXTURES / f"{name}.yaml").read_text()
        slow = text.replace("interval: 0.2", f"interval: {HEALTH_INTERVAL_S:g}")
        if slow == text:
            raise SystemExit(f"{FIXTURES / name}.yaml has no `interval: 0.2` to lengthen")
        (target / f"{name}.yaml").write_text(slow)
    return target


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

    # A long backlog: a thousand agents' checks right after their starts come at once.
    return await asyncio.start_server(answer, "127.0.0.1", port, backlog=4096)


class SimulatedStore(ProjectStore):
    """A ProjectStore whose agents share each expansion of a compose document.

    podman-compose's expansion builds an Enum and a dataclass at each variable it meets
    (tens of milliseconds per document); a real agent pays that on its own host, but here
    thousands of agents share two cores: their starts and health checks alone starve the
    simulators' event loops, heartbeats come late and the hub rightly closes the streams
    mid-switch (the failed 2,000-agent switch). A document that names a COMPOSE_ variable
    (which differs per host) is expanded for each agent as before; expansion makes new
    containers, so a parsed document is shared as it is."""

    shared: ClassVar[dict[tuple[str, str], Any]] = {}
    parsed: ClassVar[dict[str, Any]] = {}  # each stored compose text, parsed once

    def load(self, name: str) -> Any:
        # The health monitor reads a project's checks from its stored file after every task
        # that touched it: parsed once per process (pure-Python YAML, milliseconds each).
        text = self.project(name).compose_file.read_text()
        if text not in self.parsed:
            self.parsed[text] = yaml.safe_load(text)
        return self.expanded(name, self.parsed[text])

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


async def healthy(_url: str) -> Reply:
    return Reply(200, "ok\n")


def node_name(i: int) -> str:
    return f"sim-{i:05d}"


def shared(channel: grpc.aio.Channel) -> ChannelFactory:
    @asynccontextmanager
    async def borrow() -> AsyncIterator[grpc.aio.Channel]:
        yield channel

    return borrow


async def simulate(args: argparse.Namespace) -> None:
    health.LIST_EVERY_S = LIST_EVERY_S
    work: Path = args.work
    # Bound here on a port the system picks: one picked free by the parent could be taken
    # meanwhile by an earlier simulator's outgoing connection (10,000 of them at once).
    server = await model_server(0)
    port = server.sockets[0].getsockname()[1]
    env = {"WEB_PORT": str(port), "METRICS_DIR": str(work)}
    alpha = load_configuration(args.configs / "alpha.yaml")
    count = -(-args.agents // CHANNEL_AGENTS)
    channels = [grpc.aio.insecure_channel(args.hub, options=SETTINGS.client_options())
                for _ in range(count)]  # fmt: skip
    kinds = task_kinds()  # the kinds keep nothing per agent: one set for the process
    template = StaticProbe(INVENTORY).inventory()
    links = []
    with args.out.open("a", buffering=1) as arrivals:
        for i in range(args.first, args.first + args.agents):
            node = node_name(i)
            store = SimulatedStore(work / node, "none", Policy(allow_bind_roots=(str(work),)), env)
            store.write("alpha", alpha.text, alpha.digest)  # this host runs alpha
            edge = ScriptedPodman()
            edge.running.add(compose_name(node, "alpha"))
            podman = Podman(node, env, run=edge)
            # The monitor's checks answer from the stand-in itself (always healthy); the tasks
            # (drain, wait_healthy) ask the HTTP model server as a real agent does.
            monitor = HealthMonitor(store, podman, env, fetch=healthy)
            probe = probe_for(i, template, busy=False)
            context = TaskContext.create(store, podman, probe, env, monitor)
            tasks = FirstTask(kinds, context, node, arrivals)
            links.append(AgentLink(args.hub, Identity(node, f"id-{node}"), probe,
                                   channel=shared(channels[i % count]), tasks=tasks,
                                   monitor=monitor, early_check_s=args.early_check))  # fmt: skip
        stop = asyncio.Event()
        await asyncio.gather(*(link.run(stop) for link in links))
    server.close()


def main(argv: list[str]) -> None:
    """One simulator process: `python -m bench.switch_fanout --simulate ...` calls this."""
    parser = argparse.ArgumentParser(prog="bench.switch_fanout --simulate")
    parser.add_argument("--hub", required=True)
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--agents", type=int, required=True)
    parser.add_argument("--work", type=Path, required=True, help="the agents' state dirs")
    parser.add_argument("--configs", type=Path, required=True, help="the hub's configurations")
    parser.add_argument("--out", type=Path, required=True, help="first task arrivals")
    parser.add_argument("--early-check", type=float, default=EARLY_CHECK_S)
    asyncio.run(simulate(parser.parse_args(argv)))
