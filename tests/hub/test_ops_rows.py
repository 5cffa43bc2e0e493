"""The reads of a `switch --all` that grow with its nodes take plain rows: the capacity read
(every node asking at once), with the same warnings as the GPUs the store keeps, and a
watcher's stored events; no ORM object per node, GPU or event (those took most of the read a
`switch --all --check` of 10,000 nodes waits for, and of the watcher's on the database thread)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event
from sqlmodel import SQLModel

from hub.ops.kinds import StoredCapacity
from hub.states import NodeState
from hub.store import Database, Store
from hub.store.models import Gpu, Node, OperationEvent
from hub.store.op_rows import Change
from hub.store.operations import Event, OperationRecord, OperationStore
from hub.store.store import GpuRecord, NodeHello, as_utc
from tests.hub.test_capacity import BIG_CHAT, with_services

T0 = datetime(2026, 1, 1, tzinfo=UTC)
GIB = 1024


@contextmanager
def loads(*models: type[SQLModel]) -> Iterator[list[object]]:
    """The ORM objects of `models` loaded from rows meanwhile."""
    loaded: list[object] = []

    def count(target: object, _context: object) -> None:
        loaded.append(target)

    for model in models:
        event.listen(model, "load", count)
    try:
        yield loaded
    finally:
        for model in models:
            event.remove(model, "load", count)


def gpu(index: int, gib: int, **changes: Any) -> GpuRecord:
    return dataclasses.replace(
        GpuRecord(index=index, uuid=f"GPU-{index}", name="g", memory_total_mb=gib * GIB),
        **changes,
    )


def register(store: Store, name: str, *gpus: GpuRecord) -> None:
    store.register(NodeHello(name, f"id-{name}", name, "127.0.0.1", "1", "static", "",
                             gpus=gpus), T0)  # fmt: skip


def test_the_nodes_gpus_come_as_plain_rows_with_their_state_and_foreign_memory(
    db: Database,
) -> None:
    store = Store(db.engine)
    register(store, "fits", gpu(0, 80))
    register(store, "lost", gpu(0, 80, state="lost"))
    # 70 of its 80 GB held by a process gpufleet did not start; its own (managed) counts not.
    register(store, "busy", gpu(0, 80, processes=((4242, 70 * GIB, 0), (77, 8 * GIB, 1))))
    register(store, "bare")
    chat = with_services(BIG_CHAT, ("llm", 16, 1))

    async def every_node_at_once() -> list[list[str]]:
        capacity = StoredCapacity(db)
        names = ("fits", "lost", "busy", "bare")
        return list(await asyncio.gather(*(capacity(chat, name) for name in names)))

    with loads(Node, Gpu) as loaded:
        fits, lost, busy, bare = asyncio.run(every_node_at_once())
    assert fits == []
    assert lost == ["llm needs 16 GB on one GPU; lost has no usable GPU (GPU 0 lost)"]
    assert busy == [
        "llm needs 16 GB on one GPU; the largest GPU of busy has 10 GB (other processes hold 70 "
        "of 80 GB) (GPU 0)"
    ]
    assert bare == ["llm needs 16 GB on one GPU; bare has no GPUs"]
    assert loaded == []


def test_a_watcher_reads_the_stored_events_as_plain_rows(db: Database) -> None:
    ops = OperationStore(db.engine)
    ops.create(OperationRecord("op1", "switch", T0, "beta"), ["n1", "n2"])
    written = [
        Event(1, T0, "n1", "begin", "started"),
        Event(2, T0, "n1", "drain", "2 of 2 requests done", progress=True, percent=100.0),
        Event(3, T0, "n2", "result", "changed: alpha -> beta in 1.0 s"),
        Event(4, T0, "", "done", "succeeded: all nodes done", done=True),
    ]
    for written_event in written:
        ops.add_event("op1", written_event)
    with loads(OperationEvent) as loaded:
        found = ops.events("op1")
        later = ops.events("op1", after_seq=2)
    assert [utc(e) for e in found] == written  # SQLite gives naive UTC times back
    assert [utc(e) for e in later] == written[2:]
    assert loaded == []


def utc(stored: Event) -> Event:
    at = as_utc(stored.at)
    assert at is not None
    return dataclasses.replace(stored, at=at)


def test_a_node_that_ends_alone_in_its_turn_moves_as_a_plain_row(db: Database) -> None:
    store, ops = Store(db.engine), OperationStore(db.engine)
    register(store, "n1")
    ops.create(OperationRecord("op1", "switch", T0, "beta"), ["n1"])
    ops.set_state("n1", NodeState.SWITCHING, "beta", T0, "", "op1")
    later = T0 + timedelta(seconds=5)
    with loads(Node) as loaded:
        ops.apply([
            Change(ops.moved, "n1", NodeState.LOADING, "beta", later, "", "op1"),
            Change(ops.event_added, "op1", Event(1, later, "n1", "result", "changed")),
        ])  # fmt: skip
    assert loaded == []
    assert [(t.from_state, t.to_state) for t in ops.transitions("n1")] == [
        ("switching", "loading"),
        ("stopped", "switching"),
    ]
    assert ops.nodes_in_state(NodeState.LOADING) == ["n1"]
    assert [e.step for e in ops.events("op1")] == ["result"]
