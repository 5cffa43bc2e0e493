"""Prometheus exposition of the cluster, rendered from one snapshot per scrape."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from hub.states import NodeState
from hub.store import Database, Gpu, Node, NodeStatus
from hub.store.store import as_utc

MIB = 1024 * 1024
GPU_LABELS = ["node", "index", "uuid", "name"]
SWITCH_STATES = tuple(NodeState)


@dataclass(frozen=True)
class Snapshot:
    nodes: list[Node]
    gpus: list[tuple[Node, Gpu]]
    live_seen: dict[str, datetime]  # connected nodes' latest heartbeat
    now: datetime


class ClusterCollector(Collector):
    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snap = self.snapshot
        connected = GaugeMetricFamily("gpufleet_connected_agents", "Agents with an open stream.")
        connected.add_metric([], len(snap.live_seen))
        yield connected

        up = GaugeMetricFamily("gpufleet_node_up", "1 while the node is ready.", labels=["node"])
        age = GaugeMetricFamily(
            "gpufleet_node_heartbeat_age_seconds",
            "Seconds since the node's last heartbeat.",
            labels=["node"],
        )
        for node in snap.nodes:
            up.add_metric([node.name], 1.0 if node.status == NodeStatus.READY else 0.0)
            seen = snap.live_seen.get(node.name) or as_utc(node.last_seen)
            if seen is not None:
                age.add_metric([node.name], max(0.0, (snap.now - seen).total_seconds()))
        state = GaugeMetricFamily(
            "gpufleet_node_state",
            "1 for the node's current switch state, 0 for the others.",
            labels=["node", "state", "configuration"],
        )
        for node in snap.nodes:
            for name in SWITCH_STATES:
                current = 1.0 if node.state == name else 0.0
                state.add_metric([node.name, name, node.configuration if current else ""], current)
        yield up
        yield age
        yield state
        yield from self._gpus()

    def _gpus(self) -> Iterator[GaugeMetricFamily]:
        families = {
            "memory_used": ("gpufleet_gpu_memory_used_bytes", "VRAM in use."),
            "memory_total": ("gpufleet_gpu_memory_total_bytes", "VRAM in all."),
            "utilization": ("gpufleet_gpu_utilization_ratio", "GPU busy time, 0 to 1."),
            "temperature": ("gpufleet_gpu_temperature_celsius", "GPU temperature."),
            "power_draw": ("gpufleet_gpu_power_draw_watts", "Power drawn."),
            "power_limit": ("gpufleet_gpu_power_limit_watts", "Enforced power limit."),
            "lost": ("gpufleet_gpu_lost", "1 when the driver lost the GPU."),
        }
        gauges = {
            key: GaugeMetricFamily(name, text, labels=GPU_LABELS)
            for key, (name, text) in families.items()
        }
        for node, gpu in self.snapshot.gpus:
            labels = [node.name, str(gpu.index), gpu.uuid, gpu.name]
            values: dict[str, float | None] = {
                "memory_used": gpu.memory_used_mb * MIB,
                "memory_total": gpu.memory_total_mb * MIB,
                "utilization": (
                    gpu.utilization_percent / 100 if gpu.utilization_percent is not None else None
                ),
                "temperature": gpu.temperature_c,
                "power_draw": gpu.power_draw_w,
                "power_limit": gpu.power_limit_w,
                "lost": 1.0 if gpu.state == "lost" else 0.0,
            }
            for key, value in values.items():
                if value is not None:  # a field the GPU does not report is left out, not 0
                    gauges[key].add_metric(labels, float(value))
        yield from gauges.values()


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


def render(snapshot: Snapshot) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ClusterCollector(snapshot))
    return generate_latest(registry)
