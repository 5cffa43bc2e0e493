"""/metrics on a real database, read on a reader thread: the live state of connected nodes
(session telemetry, GPU states, heartbeats) over the stored rows, in the text format
prometheus_client writes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from hub.metrics import scrape
from hub.sessions import SessionRegistry
from hub.store import Database, GpuRecord, GpuTelemetryRecord, NodeHello, Store, migrate
from hub.store.db import sqlite_url

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
MIB = 1024 * 1024
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def hello(name: str, gpu_name: str = "NVIDIA H100") -> NodeHello:
    gpus = tuple(
        GpuRecord(k, memory_used_mb=100, uuid=f"GPU-{name}-{k}", name=gpu_name, vendor="nvidia",
                  memory_total_mb=81559, compute_capability="9.0", utilization_percent=10,
                  temperature_c=40.0, power_draw_w=100.0, power_limit_w=700.0)
        for k in range(2)
    )  # fmt: skip
    return NodeHello(name, f"id-{name}", name, "ipv4:127.0.0.1:1", "0.1.0", "static", "", {}, gpus)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[tuple[Database, SessionRegistry]]:
    """Nodes a (connected and welcomed), b (its hello waits: registering) and c (down)."""
    db = Database(sqlite_url(tmp_path))
    migrate(db.engine)
    store = Store(db.engine)
    for name in ("a", "b", "c"):
        store.register(hello(name, 'odd "GPU" \\ name' if name == "c" else "NVIDIA H100"), T0)
    registry = SessionRegistry()
    registry.open("a", "id-a", "ipv4:127.0.0.1:1", 0.0, T0 + timedelta(seconds=50))
    registry.open(
        "b", "id-b", "ipv4:127.0.0.1:1", 0.0, T0 + timedelta(seconds=50)
    ).registering = True
    yield db, registry
    db.close()


def scraped(db: Database, registry: SessionRegistry, now: datetime) -> str:
    async def run() -> bytes:
        return await db.read(scrape, registry.live, len(registry), now)

    return asyncio.run(run()).decode()


def samples(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def gpu(node: str, index: int, name: str = "NVIDIA H100") -> tuple[tuple[str, str], ...]:
    return (("index", str(index)), ("name", name), ("node", node),
            ("uuid", f"GPU-{node}-{index}"))  # fmt: skip


def test_a_connected_nodes_live_telemetry_is_what_metrics_show(
    hub: tuple[Database, SessionRegistry],
) -> None:
    db, registry = hub
    session = registry.get("a")
    assert session is not None
    session.telemetry = (GpuTelemetryRecord(0, memory_used_mb=5000, utilization_percent=93,
                                            temperature_c=71.0, power_draw_w=650.0),)  # fmt: skip
    session.gpu_states = {1: "lost"}
    shown = samples(scraped(db, registry, T0 + timedelta(seconds=60)))
    assert shown[("gpufleet_gpu_memory_used_bytes", gpu("a", 0))] == 5000 * MIB
    assert shown[("gpufleet_gpu_utilization_ratio", gpu("a", 0))] == pytest.approx(0.93)
    assert shown[("gpufleet_gpu_temperature_celsius", gpu("a", 0))] == 71
    assert shown[("gpufleet_gpu_power_draw_watts", gpu("a", 0))] == 650
    assert shown[("gpufleet_gpu_power_limit_watts", gpu("a", 0))] == 700  # not in telemetry
    assert shown[("gpufleet_gpu_lost", gpu("a", 1))] == 1  # the session's state
    assert shown[("gpufleet_gpu_memory_used_bytes", gpu("a", 1))] == 100 * MIB  # no sample
    assert shown[("gpufleet_gpu_memory_used_bytes", gpu("b", 0))] == 100 * MIB  # not welcomed
    assert shown[("gpufleet_gpu_lost", gpu("a", 0))] == 0
    up = {node: shown[("gpufleet_node_up", (("node", node),))] for node in "abc"}
    assert up == {"a": 1, "b": 0, "c": 0}
    age = {node: shown[("gpufleet_node_heartbeat_age_seconds", (("node", node),))]
           for node in "abc"}  # fmt: skip
    assert age == {"a": 10, "b": 60, "c": 60}  # a's heartbeat from its session, newer than its row
    assert shown[("gpufleet_connected_agents", ())] == 2
    states = [(k[1], v) for k, v in shown.items() if k[0] == "gpufleet_node_state"]
    assert ((("configuration", ""), ("node", "a"), ("state", "stopped")), 1) in states
    assert len(states) == 3 * 6


class Reference(Collector):
    """The same families through prometheus_client, for the text it writes."""

    def __init__(self, families: list[GaugeMetricFamily]) -> None:
        self.families = families

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from self.families


def test_the_text_is_what_prometheus_client_writes(hub: tuple[Database, SessionRegistry]) -> None:
    db, registry = hub
    text = scraped(db, registry, T0 + timedelta(seconds=60))
    families = []
    for parsed in text_string_to_metric_families(text):
        family = GaugeMetricFamily(parsed.name, parsed.documentation,
                                   labels=sorted(parsed.samples[0].labels) if parsed.samples
                                   else None)  # fmt: skip
        for s in parsed.samples:
            family.add_metric([s.labels[k] for k in sorted(s.labels)], s.value)
        families.append(family)
    registry_ = CollectorRegistry(auto_describe=False)
    registry_.register(Reference(families))
    assert text == generate_latest(registry_).decode()
    odd = samples(text)[("gpufleet_gpu_memory_total_bytes", gpu("c", 0, 'odd "GPU" \\ name'))]
    assert odd == 81559 * MIB
    assert 'gpufleet_gpu_memory_total_bytes{index="0",name="odd \\"GPU\\" \\\\ name"' in text
