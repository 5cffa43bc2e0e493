"""The store on a real database: the migrations build what the models describe."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

from hub.store import GpuRecord, GpuTelemetryRecord, NodeHello, Store, migrate, sqlite_url
from hub.store.db import make_engine

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def hello(name: str, *gpus: GpuRecord, **labels: str) -> NodeHello:
    return NodeHello(
        name, f"id-{name}", name, "ipv4:127.0.0.1:1", "0.1.0", "static", "", labels, gpus
    )


def gpu(index: int, total: int = 24564, used: int = 0) -> GpuRecord:
    return GpuRecord(
        index,
        memory_used_mb=used,
        uuid=f"GPU-{index}",
        name="NVIDIA RTX A5500",
        vendor="nvidia",
        memory_total_mb=total,
        compute_capability="8.6",
    )


@pytest.fixture
def store(tmp_path: Path, db_url: str | None) -> Iterator[Store]:
    engine = make_engine(db_url or sqlite_url(tmp_path))
    migrate(engine)
    yield Store(engine)
    engine.dispose()


def test_migrations_match_the_models(store: Store) -> None:
    with store.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    assert diff == [], f"models and migrations differ: add an Alembic revision\n{diff}"


def test_register_replaces_inventory_and_keeps_first_seen(store: Store) -> None:
    store.register(hello("gpu-a", gpu(0), gpu(1), role="chat"), T0)
    later = T0 + timedelta(minutes=5)
    store.register(hello("gpu-a", gpu(0, used=100), role="coder"), later)
    [(node, count)] = store.list_nodes()
    assert (node.status, count, node.labels) == ("ready", 1, {"role": "coder"})
    assert node.state == "stopped" and node.state_since is not None
    assert node.state_since.replace(tzinfo=UTC) == T0
    assert node.first_seen.replace(tzinfo=UTC) == T0
    found = store.get_node("gpu-a")
    assert found is not None and [g.memory_used_mb for g in found[1]] == [100]


def test_status_transitions_and_times(store: Store) -> None:
    store.register(hello("gpu-a", gpu(0)), T0)
    store.register(hello("gpu-b"), T0)
    store.record_heartbeats({"gpu-a": T0 + timedelta(seconds=5)})
    store.mark_down("gpu-a", T0 + timedelta(seconds=20), T0 + timedelta(seconds=10))
    nodes = {node.name: node for node, _ in store.list_nodes()}
    assert nodes["gpu-a"].status == "down"
    assert nodes["gpu-a"].last_seen is not None
    assert nodes["gpu-a"].last_seen.replace(tzinfo=UTC) == T0 + timedelta(seconds=10)
    assert nodes["gpu-a"].status_since.replace(tzinfo=UTC) == T0 + timedelta(seconds=20)
    assert store.mark_all_down(T0 + timedelta(minutes=1)) == 1  # only gpu-b was still ready
    assert {node.status for node, _ in store.list_nodes()} == {"down"}
    assert [(n.name, g.index) for n, g in store.list_gpus()] == [("gpu-a", 0)]


def test_a_late_mark_down_does_not_land_on_the_stream_that_replaced_it(store: Store) -> None:
    """The database refused writes while the stream ended: its mark_down waited in the retry
    queue, the agent redialled and registered; the replayed mark_down leaves it ready."""
    store.register(hello("gpu-a", gpu(0)), T0)
    store.register(hello("gpu-a", gpu(0, used=300)), T0 + timedelta(seconds=30))
    old = GpuTelemetryRecord(0, memory_used_mb=100)
    store.mark_down("gpu-a", T0 + timedelta(seconds=40), T0 + timedelta(seconds=20), [old])
    found = store.get_node("gpu-a")
    assert found is not None
    node, gpus = found
    assert node.status == "ready" and [g.memory_used_mb for g in gpus] == [300]
    store.mark_down("gpu-a", T0 + timedelta(seconds=50), T0 + timedelta(seconds=45))
    found = store.get_node("gpu-a")
    assert found is not None and found[0].status == "down"


def test_a_stopping_hubs_streams_go_down_in_one_write_with_their_last_heartbeat(
    store: Store,
) -> None:
    store.register(hello("gpu-a", gpu(0)), T0)
    store.register(hello("gpu-b", gpu(0)), T0)
    stop = T0 + timedelta(minutes=3)
    last = GpuTelemetryRecord(0, memory_used_mb=700)
    store.mark_down_many(stop, [("gpu-a", T0 + timedelta(minutes=2), [last]), ("gpu-b", None, [])])
    nodes = {node.name: node for node, _ in store.list_nodes()}
    assert {node.status for node in nodes.values()} == {"down"}
    assert nodes["gpu-a"].last_seen is not None
    assert nodes["gpu-a"].last_seen.replace(tzinfo=UTC) == T0 + timedelta(minutes=2)
    assert nodes["gpu-b"].last_seen is not None
    assert nodes["gpu-b"].last_seen.replace(tzinfo=UTC) == T0  # kept: none was given
    assert nodes["gpu-a"].status_since.replace(tzinfo=UTC) == stop
    found = store.get_node("gpu-a")
    assert found is not None and [g.memory_used_mb for g in found[1]] == [700]


def test_migrate_is_idempotent(store: Store) -> None:
    migrate(store.engine)
    store.register(hello("gpu-a"), T0)
    assert store.get_node("gpu-a") is not None


def test_telemetry_batches_state_changes_and_events(store: Store) -> None:
    store.register(hello("gpu-a", gpu(0), gpu(1)), T0)
    store.register(hello("gpu-b", gpu(0)), T0)
    sample = GpuTelemetryRecord(1, memory_used_mb=4000, memory_free_mb=20564,
                                utilization_percent=77, temperature_c=61.5, power_draw_w=120.0,
                                processes=((4242, 3900, 1),))  # fmt: skip
    store.record_heartbeats({"gpu-a": T0}, {"gpu-a": (sample,)})
    found = store.get_node("gpu-a")
    assert found is not None
    g0, g1 = found[1]
    assert (g1.memory_used_mb, g1.utilization_percent, g1.temperature_c) == (4000, 77, 61.5)
    assert (g1.power_draw_w, g1.processes) == (120.0, [[4242, 3900, 1]])
    assert g0.utilization_percent is None  # untouched
    other = store.get_node("gpu-b")
    assert other is not None and other[1][0].memory_used_mb == 0  # same index, other node

    store.gpu_state_changed("gpu-a", 1, "lost", T0, "gpu_lost", "GPU 1 lost")
    store.gpu_state_changed("gpu-a", 1, "ok", T0 + timedelta(seconds=1), "gpu_recovered", "back")
    assert [e.kind for e in store.events("gpu-a")] == ["gpu_recovered", "gpu_lost"]
    assert store.events("gpu-b") == []

    store.replace_inventory("gpu-a", "nvml", "", (gpu(0),))
    found = store.get_node("gpu-a")
    assert found is not None and [g.index for g in found[1]] == [0]
