"""Prometheus exposition of the cluster, read at each scrape on a database reader thread.

The cluster's gauges come from plain rows (hub/store/listing.py: one select of the nodes, one
of their GPUs) with the live state laid over them as the listings do (hub/listing.py): a node
is up iff it has a welcomed session, and a connected node's heartbeat and GPU telemetry are
its session's, not the row's (written at most once a minute). The text is written directly in
the Prometheus text format, as prometheus_client's `generate_latest` writes it (labels sorted
by name, values as Go formats them), in a fraction of its time: at 10,000 nodes of four GPUs
a scrape is some 400,000 samples.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from datetime import datetime

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Connection

from hub.listing import overlay
from hub.sessions import AgentSession
from hub.states import NodeState
from hub.store import Database
from hub.store.listing import every_gpu, every_node

MIB = 1024 * 1024
SWITCH_STATES = tuple(NodeState)
AGE_HELP = "Seconds since the node's last heartbeat."
STATE_HELP = "1 for the node's current switch state, 0 for the others."
Live = Callable[[str], AgentSession | None]  # a node's welcomed session, None when not ready
GPU_FAMILIES = (
    ("gpufleet_gpu_memory_used_bytes", "VRAM in use."),
    ("gpufleet_gpu_memory_total_bytes", "VRAM in all."),
    ("gpufleet_gpu_utilization_ratio", "GPU busy time, 0 to 1."),
    ("gpufleet_gpu_temperature_celsius", "GPU temperature."),
    ("gpufleet_gpu_power_draw_watts", "Power drawn."),
    ("gpufleet_gpu_power_limit_watts", "Enforced power limit."),
    ("gpufleet_gpu_lost", "1 when the driver lost the GPU."),
)


def escape(value: str) -> str:
    """A label value as the text format quotes it."""
    if '"' not in value and "\\" not in value and "\n" not in value:
        return value
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def number(value: float) -> str:
    """A sample's value as Go formats it (prometheus_client's floatToGoString, typed)."""
    text = repr(float(value))
    if not math.isfinite(value):
        return {"inf": "+Inf", "-inf": "-Inf"}.get(text, "NaN")
    dot = text.find(".")
    if value > 0 and dot > 6:  # Go switches to exponents sooner than Python
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return text


def family(name: str, text: str, lines: list[str]) -> str:
    """A gauge family: its help, its type and its samples (lines ending in a newline)."""
    return f"# HELP {name} {text}\n# TYPE {name} gauge\n" + "".join(lines)


def scrape(connection: Connection, live: Live, connected: int, now: datetime) -> bytes:
    """The cluster's gauges at `now` (on a reader thread; `live` is only looked up)."""
    parts = [family("gpufleet_connected_agents", "Agents with an open stream.",
                    [f"gpufleet_connected_agents {number(connected)}\n"])]  # fmt: skip
    up: list[str] = []
    age: list[str] = []
    state: list[str] = []
    for node in every_node(connection):
        name = escape(node.name)
        session = live(node.name)
        up.append(f'gpufleet_node_up{{node="{name}"}} {"0.0" if session is None else "1.0"}\n')
        seen = session.last_seen if session is not None else node.last_seen
        if seen is not None:
            seconds = number(max(0.0, (now - seen).total_seconds()))
            age.append(f'gpufleet_node_heartbeat_age_seconds{{node="{name}"}} {seconds}\n')
        configuration = escape(node.configuration)
        for switch in SWITCH_STATES:
            current = node.state == switch
            state.append(
                f'gpufleet_node_state{{configuration="{configuration if current else ""}",'
                f'node="{name}",state="{switch}"}} {"1.0" if current else "0.0"}\n'
            )
    parts.append(family("gpufleet_node_up", "1 while the node is ready.", up))
    parts.append(family("gpufleet_node_heartbeat_age_seconds", AGE_HELP, age))
    parts.append(family("gpufleet_node_state", STATE_HELP, state))
    parts += (family(name, text, lines) for (name, text), lines in zip(
        GPU_FAMILIES, _gpu_lines(connection, live), strict=True))  # fmt: skip
    return "".join(parts).encode()


def _gpu_lines(connection: Connection, live: Live) -> list[list[str]]:
    """Each GPU family's samples, in GPU_FAMILIES' order; a field the GPU does not report is
    left out, not 0."""
    lines: list[list[str]] = [[] for _ in GPU_FAMILIES]
    names = [name for name, _ in GPU_FAMILIES]
    known: dict[float, str] = {}  # values repeat (totals, limits, 0 and 1): each formatted once
    node, session = "", None
    for row in every_gpu(connection):
        if row.node != node:
            node, session = row.node, live(row.node)
        gpu = overlay(session, row)
        labels = (
            f'{{index="{gpu.index}",name="{escape(gpu.name)}",node="{escape(gpu.node)}",'
            f'uuid="{escape(gpu.uuid)}"}} '
        )
        utilization = gpu.utilization_percent
        values = (
            gpu.memory_used_mb * MIB, gpu.memory_total_mb * MIB,
            utilization / 100 if utilization is not None else None, gpu.temperature_c,
            gpu.power_draw_w, gpu.power_limit_w, 1.0 if gpu.state == "lost" else 0.0,
        )  # fmt: skip
        for found, name, value in zip(lines, names, values, strict=True):
            if value is not None:
                text = known.get(value)
                if text is None:
                    text = known[value] = number(value)
                found.append(f"{name}{labels}{text}\n")
    return lines


class StoreCollector(Collector):
    """Whether the hub's database takes its writes (read at each scrape)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[Metric]:
        ok = GaugeMetricFamily("gpufleet_store_ok", "1 while database writes land, else 0.")
        ok.add_metric([], 0.0 if self.db.error else 1.0)
        yield ok
        pending = GaugeMetricFamily(
            "gpufleet_store_pending_writes", "Writes kept in memory until the database takes them."
        )
        pending.add_metric([], float(self.db.pending))
        yield pending
        failures = CounterMetricFamily(
            "gpufleet_store_write_failures", "Database write attempts that failed."
        )
        failures.add_metric([], float(self.db.write_failures))
        yield failures
        lost = CounterMetricFamily(
            "gpufleet_store_writes_lost", "Writes given up (refused for good, or over the limit)."
        )
        lost.add_metric([], float(self.db.writes_lost))
        yield lost
