"""Listing pages on a real database, read on the reader threads (Database.read): filters,
paging with filters, the live state of connected nodes laid over the rows, bad filters."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from gpufleet.selectors import parse
from gpufleet.v1 import hub_pb2, types_pb2
from hub import limits, listing
from hub.sessions import SessionRegistry
from hub.store import Database, GpuRecord, GpuTelemetryRecord, NodeHello, Store, migrate
from hub.store import listing as store_listing
from hub.store.db import sqlite_url
from hub.store.listing import Filter

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
NODES = 40


def name(i: int) -> str:
    return f"node-{i:03d}"


def hello(i: int) -> NodeHello:
    gpus = tuple(
        GpuRecord(k, memory_used_mb=100, uuid=f"GPU-{i}-{k}", name="NVIDIA H100",
                  vendor="nvidia", memory_total_mb=81559, compute_capability="9.0")
        for k in range(i % 3)
    )  # fmt: skip
    labels = {"parity": "odd" if i % 2 else "even", **({"rare": "yes"} if i % 13 == 5 else {})}
    return NodeHello(name(i), f"id-{i}", name(i), "ipv4:127.0.0.1:1", "0.1.0", "static", "",
                     labels, gpus)  # fmt: skip


@pytest.fixture
def hub(tmp_path: Path, db_url: str | None) -> Iterator[tuple[Database, SessionRegistry]]:
    """NODES nodes (i % 3 GPUs each), the multiples of 4 connected, node 8 switching."""
    db = Database(db_url or sqlite_url(tmp_path))
    migrate(db.engine)
    store = Store(db.engine)
    for i in reversed(range(NODES)):
        store.register(hello(i), T0)
    with db.engine.begin() as connection:
        node = store_listing.NODE
        connection.execute(node.update().where(node.c.name == name(8)).values(state="switching"))
    registry = SessionRegistry()
    for i in range(0, NODES, 4):
        registry.open(name(i), f"id-{i}", "ipv4:127.0.0.1:1", 0.0, T0 + timedelta(minutes=1))
    yield db, registry
    db.close()


def read(db: Database, fn: Callable[..., Any], *args: Any) -> Any:
    async def run() -> Any:
        return await db.read(fn, *args)

    return asyncio.run(run())


def chosen(registry: SessionRegistry, selector: tuple[str, ...] = (), states: tuple[str, ...] = (),
           gpu_states: tuple[str, ...] = (), **fields: Any) -> Filter:  # fmt: skip
    request = hub_pb2.ListGpusRequest(**fields)
    return listing.chosen(request, parse(selector), registry.get, states, gpu_states)


def all_nodes(db: Database, registry: SessionRegistry, size: int, wanted: Filter) -> list[str]:
    found, token, pages = [], "", 0
    while True:
        after = limits.Page.key(token, 1)[0] if token else ""
        nodes, token = read(db, listing.nodes_page, after, size, wanted, registry.get)
        assert len(nodes) <= size
        found += [n.name for n in nodes]
        pages += 1
        assert pages < 100, "the pages do not end"
        if not token:
            return found


def all_gpus(db: Database, registry: SessionRegistry, size: int, wanted: Filter
             ) -> list[hub_pb2.NodeGpu]:  # fmt: skip
    found: list[hub_pb2.NodeGpu] = []
    token = ""
    while True:
        key = limits.gpu_key(limits.Page.key(token, 2))
        gpus, token = read(db, listing.gpus_page, key, size, wanted, registry.get)
        assert len(gpus) <= size
        found += gpus
        if not token:
            return found


@pytest.mark.parametrize("size", [1, 3, 7, 500])
def test_filters_page_by_page(hub: tuple[Database, SessionRegistry], size: int) -> None:
    db, registry = hub
    everyone = [name(i) for i in range(NODES)]
    assert all_nodes(db, registry, size, chosen(registry)) == everyone
    ready = chosen(registry, status=["ready"])
    assert all_nodes(db, registry, size, ready) == [name(i) for i in range(0, NODES, 4)]
    down = chosen(registry, selector=("parity=odd",), status=["down"])
    assert all_nodes(db, registry, size, down) == [name(i) for i in range(1, NODES, 2)]
    named = chosen(registry, names=[name(30), name(2), name(2), "no-such-node"])
    assert all_nodes(db, registry, size, named) == [name(2), name(30)]
    rare = chosen(registry, selector=("rare",))
    assert all_nodes(db, registry, size, rare) == [name(5), name(18), name(31)]
    switching = chosen(registry, states=("switching", "failed"))
    assert all_nodes(db, registry, size, switching) == [name(8)]
    gpus = all_gpus(db, registry, size, chosen(registry))
    assert [(g.node, g.gpu.index) for g in gpus] == [
        (name(i), k) for i in range(NODES) for k in range(i % 3)
    ]
    even = all_gpus(db, registry, size, chosen(registry, selector=("parity=even",)))
    assert {g.node for g in even} == {name(i) for i in range(0, NODES, 2) if i % 3}


@pytest.mark.parametrize("size", [1, 3, 500])
def test_gpus_filtered_in_sql_page_by_page(
    hub: tuple[Database, SessionRegistry], size: int
) -> None:
    """Names, node states and GPU states filter in the one keyset query over GPUs."""
    db, registry = hub
    with db.engine.begin() as connection:
        gpu, node = store_listing.GPU, store_listing.NODE
        lost = select(node.c.id).where(node.c.name == name(11)).scalar_subquery()
        connection.execute(gpu.update().where(gpu.c.node_id == lost, gpu.c.index == 1)
                           .values(state="lost"))  # fmt: skip
    named = chosen(registry, names=[name(8), name(2), name(5), name(3)])
    assert [(g.node, g.gpu.index) for g in all_gpus(db, registry, size, named)] == [
        (name(2), 0), (name(2), 1), (name(5), 0), (name(5), 1), (name(8), 0), (name(8), 1)
    ]  # fmt: skip
    switching = chosen(registry, states=("switching",))
    assert [(g.node, g.gpu.index) for g in all_gpus(db, registry, size, switching)] == [
        (name(8), 0), (name(8), 1)
    ]  # fmt: skip
    lost_ones = chosen(registry, gpu_states=("lost",))
    assert [(g.node, g.gpu.index) for g in all_gpus(db, registry, size, lost_ones)] == [
        (name(11), 1)
    ]  # fmt: skip
    ok = all_gpus(db, registry, size, chosen(registry, gpu_states=("ok",)))
    assert [(g.node, g.gpu.index) for g in ok] == [
        (name(i), k) for i in range(NODES) for k in range(i % 3) if (i, k) != (11, 1)
    ]


def test_a_page_counts_its_nodes_gpus_and_says_who_is_connected(
    hub: tuple[Database, SessionRegistry],
) -> None:
    db, registry = hub
    nodes, token = read(db, listing.nodes_page, "", 5, chosen(registry), registry.get)
    assert [(n.name, n.gpu_count) for n in nodes] == [(name(i), i % 3) for i in range(5)]
    ready, down = types_pb2.NODE_STATUS_READY, types_pb2.NODE_STATUS_DOWN
    assert [n.status for n in nodes] == [ready, down, down, down, ready]
    assert nodes[0].last_seen.ToDatetime(UTC) == T0 + timedelta(minutes=1)  # the session's
    assert nodes[1].last_seen.ToDatetime(UTC) == T0  # the row's
    assert limits.Page.key(token, 1) == (name(4),)


def test_a_connected_nodes_telemetry_from_memory_beats_the_row(
    hub: tuple[Database, SessionRegistry],
) -> None:
    db, registry = hub
    session = registry.get(name(8))
    assert session is not None
    session.telemetry = (GpuTelemetryRecord(0, memory_used_mb=5000, utilization_percent=93,
                                            processes=((42, 4000, 1),)),)  # fmt: skip
    session.gpu_states = {0: "ok", 1: "lost"}
    gpus = all_gpus(db, registry, 500, chosen(registry, names=[name(8), name(5)]))
    shown = {(g.node, g.gpu.index): g for g in gpus}
    live = shown[(name(8), 0)]
    assert (live.gpu.memory_used_mb, live.gpu.utilization_percent) == (5000, 93)
    assert [(p.pid, p.managed) for p in live.gpu.processes] == [(42, True)]
    assert live.node_status == types_pb2.NODE_STATUS_READY
    assert shown[(name(8), 1)].gpu.state == types_pb2.GPU_STATE_LOST
    assert shown[(name(8), 1)].gpu.memory_used_mb == 100  # no sample: the row's
    stored = shown[(name(5), 0)]  # down: as the database has it
    assert stored.gpu.memory_used_mb == 100 and stored.node_status == types_pb2.NODE_STATUS_DOWN
    lost = all_gpus(db, registry, 500, chosen(registry, gpu_states=("lost",)))
    assert [(g.node, g.gpu.index) for g in lost] == []  # stored ok: the row's state decides
    ok = all_gpus(db, registry, 500, chosen(registry, names=[name(8)], gpu_states=("ok",)))
    assert [(g.node, g.gpu.index) for g in ok] == [(name(8), 0)]  # live lost is left out


def test_a_sparse_filter_reads_a_bounded_slice_per_page(
    hub: tuple[Database, SessionRegistry], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With at most 6 nodes read per page, a rare match comes in short (or empty) pages
    whose tokens go on where the reading stopped, and nothing is lost."""
    db, registry = hub
    monkeypatch.setattr(store_listing, "SCAN_ROWS", 6)
    rare = chosen(registry, selector=("rare",))
    nodes, token = read(db, listing.nodes_page, "", 500, rare, registry.get)
    assert [n.name for n in nodes] == [name(5)] and limits.Page.key(token, 1) == (name(5),)
    nodes, token = read(db, listing.nodes_page, name(5), 500, rare, registry.get)
    assert nodes == [] and limits.Page.key(token, 1) == (name(11),)
    assert all_nodes(db, registry, 500, rare) == [name(5), name(18), name(31)]
    found = all_gpus(db, registry, 500, rare)
    assert [(g.node, g.gpu.index) for g in found] == [(name(5), 0), (name(5), 1), (name(31), 0)]


def test_status_pages_name_the_operation_holding_a_node(
    hub: tuple[Database, SessionRegistry],
) -> None:
    db, registry = hub
    busy = {name(8): "op-7"}
    wanted = chosen(registry, states=("switching",))
    states, token = read(db, listing.states_page, "", 10, wanted, registry.get, busy.get)
    assert [(s.node, s.state, s.operation_id, s.status) for s in states] == [
        (name(8), "switching", "op-7", types_pb2.NODE_STATUS_READY)
    ]
    assert token == ""


@pytest.mark.parametrize(
    ("fields", "states", "gpu_states", "line"),
    [
        ({"status": ["up"]}, (), (), "invalid status 'up': one of ready, down"),
        ({}, ("running",), (),
         "invalid state 'running': one of stopped, switching, loading, ready, failed, draining"),
        ({}, (), ("broken",), "invalid gpu_state 'broken': one of ok, lost"),
        ({"names": ["x" * 300]}, (), (), "names is 300 characters long: at most 253"),
    ],
)  # fmt: skip
def test_a_bad_filter_is_refused_with_one_line_naming_what_is_allowed(
    fields: dict[str, Any], states: tuple[str, ...], gpu_states: tuple[str, ...], line: str
) -> None:
    with pytest.raises(limits.OutOfBounds) as refused:
        chosen(SessionRegistry(), (), states, gpu_states, **fields)
    assert str(refused.value) == line


def test_a_page_stays_under_the_message_limit(
    hub: tuple[Database, SessionRegistry], monkeypatch: pytest.MonkeyPatch
) -> None:
    db, registry = hub
    monkeypatch.setattr(limits, "REPLY_BYTES", 1000)
    nodes, token = read(db, listing.nodes_page, "", 500, chosen(registry), registry.get)
    assert 1 <= len(nodes) < 20 and limits.Page.key(token, 1) == (nodes[-1].name,)
    assert all_nodes(db, registry, 500, chosen(registry)) == [name(i) for i in range(NODES)]


def test_get_node_shows_its_gpus_with_the_live_state(hub: tuple[Database, SessionRegistry]) -> None:
    db, registry = hub
    session = registry.get(name(8))
    assert session is not None
    session.telemetry = (GpuTelemetryRecord(1, memory_used_mb=7000),)
    node = read(db, listing.node_detail, name(8), registry.get)
    assert (node.name, node.status, node.state) == (name(8), types_pb2.NODE_STATUS_READY,
                                                    "switching")  # fmt: skip
    assert [(g.index, g.memory_used_mb) for g in node.gpus] == [(0, 100), (1, 7000)]
    assert node.gpu_count == 2 and node.labels["parity"] == "even"
    assert read(db, listing.node_detail, "no-such-node", registry.get) is None
