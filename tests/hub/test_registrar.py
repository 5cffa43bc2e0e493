"""Hellos registered in batches: the store side on SQLite and PostgreSQL, and the Registrar
that batches concurrent callers on the database thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from hub.registrar import Registrar, RegistrarClosed
from hub.store import Database, GpuRecord, NodeHello, Store, migrate, sqlite_url
from hub.store.db import make_engine
from hub.store.register import Hello, register_hellos
from hub.store.store import BAD_ROW, as_utc

T0 = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
LATER = T0 + timedelta(minutes=7)


def gpu(index: int, used: int = 0, total: int = 24564, uuid: str = "") -> GpuRecord:
    return GpuRecord(
        index, memory_used_mb=used, temperature_c=41.5, processes=((7, used, 1),),
        uuid=uuid or f"GPU-{index}", name="NVIDIA RTX A5500", vendor="nvidia",
        memory_total_mb=total, compute_capability="8.6", power_limit_w=230.0,
    )  # fmt: skip


def hello(name: str, *gpus: GpuRecord, **labels: str) -> NodeHello:
    return NodeHello(name, f"id-{name}", f"host-{name}", "ipv4:10.0.0.1:1", "0.9.0", "nvml", "",
                     labels, gpus, ("podman: no cgroup v2",))  # fmt: skip


@pytest.fixture
def engine(tmp_path: Path, db_url: str | None) -> Iterator[Engine]:
    made = make_engine(db_url or sqlite_url(tmp_path))
    migrate(made)
    yield made
    made.dispose()


def gpu_ids(store: Store, name: str) -> list[int | None]:
    found = store.get_node(name)
    assert found is not None
    return [row.id for row in found[1]]


def test_a_batch_records_every_node_as_store_register_does(engine: Engine) -> None:
    store = Store(engine)
    hellos = [Hello(hello(f"n-{i:03d}", gpu(0), gpu(1), rack=str(i % 3)), T0) for i in range(120)]
    assert register_hellos(engine, hellos) == {}
    listed = store.list_nodes()
    assert [(node.name, count) for node, count in listed] == [(f"n-{i:03d}", 2) for i in range(120)]
    node = listed[7][0]
    assert (node.status, node.state, node.labels, node.agent_id) == (
        "ready", "stopped", {"rack": "1"}, "id-n-007")  # fmt: skip
    assert (node.hostname, node.agent_version, node.probe, node.preflight) == (
        "host-n-007", "0.9.0", "nvml", ["podman: no cgroup v2"])  # fmt: skip
    assert {as_utc(node.first_seen), as_utc(node.status_since), as_utc(node.state_since),
            as_utc(node.last_seen)} == {T0}  # fmt: skip
    found = store.get_node("n-007")
    assert found is not None
    assert [(g.index, g.uuid, g.power_limit_w, g.temperature_c, g.processes) for g in found[1]] == [
        (0, "GPU-0", 230.0, 41.5, [[7, 0, 1]]), (1, "GPU-1", 230.0, 41.5, [[7, 0, 1]])]  # fmt: skip


def test_a_restart_keeps_first_seen_and_state_since_and_moves_status_since(engine: Engine) -> None:
    store = Store(engine)
    register_hellos(engine, [Hello(hello("a", gpu(0)), T0), Hello(hello("b", gpu(0)), T0)])
    store.mark_down("a", T0 + timedelta(minutes=1), None)
    register_hellos(engine, [Hello(hello("a", gpu(0), role="chat"), LATER),
                             Hello(hello("b", gpu(0)), LATER)])  # fmt: skip
    nodes = {node.name: node for node, _ in store.list_nodes()}
    a, b = nodes["a"], nodes["b"]
    assert (a.status, a.labels, b.status) == ("ready", {"role": "chat"}, "ready")
    assert as_utc(a.status_since) == LATER  # it was down
    assert as_utc(b.status_since) == T0  # it stayed ready
    assert as_utc(a.first_seen) == as_utc(a.state_since) == T0
    assert as_utc(a.last_seen) == as_utc(b.last_seen) == LATER


def test_an_unchanged_inventory_keeps_the_gpu_rows(engine: Engine) -> None:
    store = Store(engine)
    register_hellos(engine, [Hello(hello("a", gpu(0), gpu(1)), T0), Hello(hello("z", gpu(0)), T0)])
    before = gpu_ids(store, "a")
    register_hellos(engine, [Hello(hello("a", gpu(0), gpu(1, used=900)), LATER)])
    assert gpu_ids(store, "a") == before
    found = store.get_node("a")
    assert found is not None  # the telemetry of the hello is stored all the same
    assert [(g.memory_used_mb, g.processes) for g in found[1]] == [
        (0, [[7, 0, 1]]), (900, [[7, 900, 1]])]  # fmt: skip


@pytest.mark.parametrize(
    "changed",
    [(gpu(0), gpu(1, total=49140)), (gpu(0),), (gpu(0), gpu(1), gpu(2)),
     (gpu(0), gpu(1, uuid="GPU-swapped"))],
    ids=["memory", "one-gone", "one-more", "swapped"],
)  # fmt: skip
def test_a_changed_inventory_replaces_the_gpu_rows(
    engine: Engine, changed: tuple[GpuRecord, ...]
) -> None:
    store = Store(engine)
    # "z" holds the highest row ids: SQLite would hand a's freed ones out again.
    register_hellos(engine, [Hello(hello("a", gpu(0), gpu(1)), T0), Hello(hello("z", gpu(0)), T0)])
    before = set(gpu_ids(store, "a"))
    register_hellos(engine, [Hello(hello("a", *changed), LATER)])
    found = store.get_node("a")
    assert found is not None
    assert [(g.index, g.uuid, g.memory_total_mb) for g in found[1]] == [
        (g.index, g.uuid, g.memory_total_mb) for g in changed
    ]
    assert not before & set(gpu_ids(store, "a"))


def test_one_bad_hello_does_not_fail_the_batch(engine: Engine) -> None:
    store = Store(engine)
    register_hellos(engine, [Hello(hello("old", gpu(0)), T0)])
    bad = hello("bad", gpu(0, total=2**70))  # past any integer column
    failed = register_hellos(engine, [
        Hello(hello("good-1", gpu(0)), LATER), Hello(bad, LATER),
        Hello(hello("old", gpu(0), gpu(1)), LATER), Hello(hello("good-2"), LATER),
    ])  # fmt: skip
    assert list(failed) == ["bad"]
    assert {node.name: count for node, count in store.list_nodes()} == {
        "good-1": 1, "good-2": 0, "old": 2}  # fmt: skip


def test_the_last_hello_of_a_node_in_a_batch_wins(engine: Engine) -> None:
    store = Store(engine)
    register_hellos(engine, [
        Hello(hello("a", gpu(0), role="first"), T0),
        Hello(hello("a", gpu(0), gpu(1), role="last"), LATER),
    ])  # fmt: skip
    [(node, count)] = store.list_nodes()
    assert (node.labels, count, as_utc(node.last_seen)) == ({"role": "last"}, 2, LATER)


@pytest.fixture
def db(tmp_path: Path, db_url: str | None) -> Iterator[Database]:
    database = Database(db_url or sqlite_url(tmp_path))
    migrate(database.engine)
    yield database
    database.close()


def run(db: Database, scenario: Callable[[Database], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(db), 60))


async def hold(db: Database) -> tuple[threading.Event, asyncio.Future[bool]]:
    """Keep the database thread busy until the returned event is set."""
    release = threading.Event()
    busy = asyncio.ensure_future(db.call(release.wait, 30))
    await asyncio.sleep(0.05)
    return release, busy


def test_concurrent_callers_resolve_in_few_batches(db: Database) -> None:
    run(db, _test_concurrent_callers_resolve_in_few_batches)


async def _test_concurrent_callers_resolve_in_few_batches(db: Database) -> None:
    registrar = Registrar(db, batch=40)
    release, busy = await hold(db)
    calls = [
        asyncio.ensure_future(registrar.register(hello(f"n-{i:03d}", gpu(0)), T0))
        for i in range(100)
    ]
    await asyncio.sleep(0.05)
    assert not any(call.done() for call in calls)  # all wait for the database thread
    release.set()
    await asyncio.wait_for(asyncio.gather(busy, *calls), 30)
    assert (registrar.batches, registrar.largest) == (3, 40)  # 40 + 40 + 20
    assert len(Store(db.engine).list_nodes()) == 100
    await registrar.close()


def test_a_bad_hello_fails_only_its_caller(db: Database) -> None:
    run(db, _test_a_bad_hello_fails_only_its_caller)


async def _test_a_bad_hello_fails_only_its_caller(db: Database) -> None:
    registrar = Registrar(db)
    release, busy = await hold(db)
    good = asyncio.ensure_future(registrar.register(hello("good", gpu(0)), T0))
    bad = asyncio.ensure_future(registrar.register(hello("bad", gpu(0, total=2**70)), T0))
    release.set()
    await busy
    await asyncio.wait_for(good, 30)
    with pytest.raises(BAD_ROW):
        await asyncio.wait_for(bad, 30)
    assert [node.name for node, _ in Store(db.engine).list_nodes()] == ["good"]
    assert registrar.batches == 1
    await registrar.close()


def test_a_caller_gone_before_its_batch_is_not_registered(db: Database) -> None:
    run(db, _test_a_caller_gone_before_its_batch_is_not_registered)


async def _test_a_caller_gone_before_its_batch_is_not_registered(db: Database) -> None:
    registrar = Registrar(db)
    release, busy = await hold(db)
    first = asyncio.ensure_future(registrar.register(hello("first"), T0))
    await asyncio.sleep(0.05)  # its batch is taken and waits for the database thread
    gone = asyncio.ensure_future(registrar.register(hello("gone"), T0))
    kept = asyncio.ensure_future(registrar.register(hello("kept"), T0))
    await asyncio.sleep(0.05)
    gone.cancel()
    release.set()
    await asyncio.wait_for(asyncio.gather(busy, first, kept), 30)
    assert [node.name for node, _ in Store(db.engine).list_nodes()] == ["first", "kept"]
    await registrar.close()


def test_close_fails_the_waiting_callers(db: Database) -> None:
    run(db, _test_close_fails_the_waiting_callers)


async def _test_close_fails_the_waiting_callers(db: Database) -> None:
    registrar = Registrar(db)
    release, busy = await hold(db)
    waiting = asyncio.ensure_future(registrar.register(hello("late"), T0))
    await asyncio.sleep(0.05)
    await registrar.close()
    with pytest.raises(RegistrarClosed):
        await waiting
    with pytest.raises(RegistrarClosed):
        await registrar.register(hello("later"), T0)
    release.set()
    await busy
