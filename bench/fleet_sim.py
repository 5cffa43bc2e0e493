"""One simulator process of the hub benchmark: its share of real AgentLink clients.

    python -m bench.hub_agents --simulate --hub ADDR --first 0 --count 500 --stats FILE

Every agent is a real AgentLink (agent/link.py) on its own gRPC channel (its own TCP and,
with --certs, its own mutual-TLS session and certificate), as a real agent host would be.
Its GPUs are a 4-GPU slice of the h100x8 static inventory with UUIDs of its own, read once:
re-reading YAML at every heartbeat of thousands of agents would load the machine the hub
is measured on. With --telemetry busy their readings move at every heartbeat. Each second
the process writes its counts to --stats (JSON): connects, failed attempts and their
reasons, the agents connected now, heartbeats sent.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import dataclasses
import json
import logging
import os
import random
import re
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from agent.link import AgentLink, Identity
from agent.probes import ProbeResult, StaticProbe
from bench.common import REPO
from bench.fleet_certs import AgentCert, node_name, read_certs
from gpufleet.channel import SETTINGS
from gpufleet.tls import TLS_OPTIONS
from gpufleet.v1 import agent_link_pb2 as pb

INVENTORY = REPO / "configs" / "inventories" / "h100x8.yaml"
GPUS = 4
# The agent a log line of agent.link is about: set per agent task, read by the handler.
current: contextvars.ContextVar[int] = contextvars.ContextVar("agent", default=-1)


@dataclass
class Counts:
    connects: int = 0
    failures: int = 0
    reasons: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class FixedProbe:
    """The agent's GPUs as read once from the static inventory."""

    found: ProbeResult
    name: str = "static"

    def inventory(self) -> ProbeResult:
        return self.found


@dataclass
class BusyProbe:
    """The same GPUs, busy: utilization, memory, temperature and power move at each read,
    so every heartbeat carries telemetry the hub stores (its database's worst case)."""

    found: ProbeResult
    rng: random.Random
    name: str = "static"

    def inventory(self) -> ProbeResult:
        gpus = tuple(
            dataclasses.replace(
                gpu,
                utilization_percent=self.rng.randint(0, 100),
                memory_used_mb=self.rng.randint(0, gpu.memory_total_mb),
                temperature_c=float(self.rng.randint(35, 85)),
                power_draw_w=float(self.rng.randint(60, 700)),
            )
            for gpu in self.found.gpus
        )
        return dataclasses.replace(self.found, gpus=gpus)


def probe_for(index: int, template: ProbeResult, busy: bool) -> FixedProbe | BusyProbe:
    gpus = tuple(
        dataclasses.replace(gpu, uuid=f"GPU-sim-{index:05d}-{gpu.index}")
        for gpu in template.gpus[:GPUS]
    )
    found = dataclasses.replace(template, gpus=gpus)
    return BusyProbe(found, random.Random(index)) if busy else FixedProbe(found)


class CountingLink(AgentLink):
    """An AgentLink that counts the heartbeats it builds."""

    beats = 0

    async def heartbeat(self, *args: Any, **kwargs: Any) -> pb.Heartbeat:
        CountingLink.beats += 1
        return await super().heartbeat(*args, **kwargs)


class Reasons(logging.Handler):
    """Why sessions ended or attempts failed, per agent, from agent.link's warnings."""

    def __init__(self, counts: list[Counts]) -> None:
        super().__init__(logging.INFO)
        self.counts = counts

    def emit(self, record: logging.LogRecord) -> None:
        index = current.get()
        text = record.getMessage()
        ended = record.levelno == logging.INFO and " ended: " in text
        if index < 0 or (record.levelno < logging.WARNING and not ended):
            return  # connected, paced, reconnecting in N s
        self.counts[index].reasons[reason(text)] += 1


def reason(text: str) -> str:
    """A log line without addresses and numbers, so like causes count together."""
    text = re.sub(r"\b(?:ipv4:|ipv6:)?\[?[\w.:]*\]?:\d+\b", "ADDR", text)
    text = re.sub(r"\d+(?:\.\d+)?", "N", text)
    return text.replace("\n", " ")[:120]


def channel_factory(
    hub: str, ca: bytes | None, cert: AgentCert | None
) -> Callable[[], AbstractAsyncContextManager[grpc.aio.Channel]]:
    options = SETTINGS.client_options()
    if cert is None or ca is None:
        return lambda: grpc.aio.insecure_channel(hub, options=options)
    credentials = grpc.ssl_channel_credentials(ca, cert.key_pem.encode(), cert.cert_pem.encode())
    return lambda: grpc.aio.secure_channel(hub, credentials, options=[*options, *TLS_OPTIONS])


async def simulate(args: argparse.Namespace) -> None:
    template = StaticProbe(INVENTORY).inventory()
    certs = read_certs(args.certs, args.first, args.count) if args.certs else None
    ca = args.ca.read_bytes() if args.ca else None
    counts = [Counts() for _ in range(args.count)]
    logging.getLogger("agent.link").addHandler(Reasons(counts))
    logging.getLogger("agent.link").setLevel(logging.INFO)
    logging.getLogger("agent.link").propagate = False
    links: list[AgentLink] = []
    for offset in range(args.count):
        index = args.first + offset

        def attempt(ok: bool, mine: Counts = counts[offset]) -> None:
            if ok:
                mine.connects += 1
            else:
                mine.failures += 1

        links.append(CountingLink(
            args.hub, Identity(node_name(index), f"sim-id-{index}", {"bench": "1"}),
            probe_for(index, template, args.telemetry == "busy"),
            channel=channel_factory(args.hub, ca, certs[offset] if certs else None),
            on_attempt=attempt,
            # No early-beat check: it probes once a second per agent (about 0.5 of a core for
            # 10,000 simulated agents on the machine the hub is measured on), and nothing a
            # simulated agent reports changes between its beats, so the hub sees the same.
            early_check_s=0,
        ))  # fmt: skip
    stop = asyncio.Event()

    async def run(offset: int, link: AgentLink) -> None:
        current.set(offset)
        await link.run(stop)

    tasks = [asyncio.create_task(run(i, link)) for i, link in enumerate(links)]
    while True:
        write_stats(args.stats, counts, links)
        await asyncio.sleep(1.0)
        if any(task.done() for task in tasks):
            for task in tasks:
                if task.done():
                    task.result()


def write_stats(path: Path, counts: list[Counts], links: list[AgentLink]) -> None:
    reasons: Counter[str] = Counter()
    for count in counts:
        reasons.update(count.reasons)
    stats = {
        "agents": len(links),
        "connected": sum(link.connected.is_set() for link in links),
        "ever_connected": sum(count.connects > 0 for count in counts),
        "connects": sum(count.connects for count in counts),
        "failures": sum(count.failures for count in counts),
        "heartbeats": CountingLink.beats,
        "reasons": dict(reasons),
    }
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(stats))
    os.replace(tmp, path)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench.hub_agents --simulate")
    parser.add_argument("--hub", required=True)
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--stats", type=Path, required=True)
    parser.add_argument("--certs", type=Path, help="agents.jsonl of bench.fleet_certs")
    parser.add_argument("--ca", type=Path, help="the hub's ca.crt (with --certs)")
    parser.add_argument("--telemetry", choices=["fixed", "busy"], default="fixed")
    asyncio.run(simulate(parser.parse_args(argv)))
