"""An operation's writes gathered per turn of the event loop: every node's moves, events and
results land, in one transaction when they can, one by one around a refused one; and the
capacity warnings of many nodes asking at once (read together) are each their own."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hub.ops.batches import Outcome
from hub.ops.kind import NodeRun, OperationKind, Request
from hub.ops.kinds import StoredCapacity
from hub.ops.manager import OperationManager
from hub.sessions import SessionRegistry
from hub.states import NodeState
from hub.store import Database, Store, migrate
from hub.store.op_rows import Change
from hub.store.operations import Event, OperationRecord, OperationStore
from hub.store.store import GpuRecord, NodeHello
from tests.hub.test_capacity import BIG_CHAT

S = NodeState
T0 = datetime(2026, 1, 1, tzinfo=UTC)
NODES = [f"n{i:03d}" for i in range(60)]


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    db = Database(f"sqlite:///{tmp_path / 'hub.db'}")
    migrate(db.engine)
    store = Store(db.engine)
    for name in NODES:
        store.register(NodeHello(name, f"id-{name}", name, "127.0.0.1", "1", "none", ""), T0)
    yield db
    db.close()


class Walk(OperationKind):
    """Moves every node stopped -> switching -> loading -> ready, reporting each step."""

    name = "test-walk"

    async def run_node(self, run: NodeRun) -> Outcome:
        for state in (S.SWITCHING, S.LOADING, S.READY):
            run.set_state(state, "beta", "")
            run.report("step", f"now {state}")
            await asyncio.sleep(0)  # the other nodes move in the same turns
        return Outcome("changed", "walked")


def test_every_node_of_a_wide_operation_has_its_transitions_events_and_result(
    db: Database,
) -> None:
    registry = SessionRegistry()
    for name in NODES:
        registry.open(name, f"id-{name}", "127.0.0.1", 0.0, T0)
    ops = OperationStore(db.engine)

    async def scenario() -> OperationRecord:
        manager = OperationManager(registry, db, ops)
        operation_id = await manager.submit(Request(Walk(), NODES), NODES)
        steps = [event.step async for event in manager.watch(operation_id)]
        assert steps[-1] == "done"
        found = await db.call(ops.get, operation_id)
        assert found is not None
        return found

    record = asyncio.run(scenario())
    assert record.status == "succeeded"
    assert {(n.result, n.message) for n in record.nodes} == {("changed", "walked")}
    assert all(n.started is not None and n.finished is not None for n in record.nodes)
    events = ops.events(record.id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert len([e for e in events if e.step == "step"]) == 3 * len(NODES)
    for name in NODES:
        walk = [(t.from_state, t.to_state) for t in reversed(ops.transitions(name))]
        assert walk == [("stopped", "switching"), ("switching", "loading"), ("loading", "ready")]
        assert all(t.operation_id == record.id for t in ops.transitions(name))
    assert sorted(ops.nodes_in_state(S.READY)) == NODES


def test_a_refused_write_of_a_batch_loses_only_itself(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    ops = OperationStore(db.engine)
    ops.create(OperationRecord("op1", "switch", T0), ["n000", "n001", "n002"])
    changes = [
        Change(ops.moved, "n000", S.SWITCHING, "beta", T0, "", "op1"),
        Change(ops.moved, "n001", S.READY, "beta", T0, "", "op1"),  # stopped -> ready: refused
        Change(ops.event_added, "op1", Event(1, T0, "n000", "start", "started beta")),
        Change(ops.resulted, "op1", "n002", "changed", "done", T0, T0),
        Change(ops.moved, "n002", S.SWITCHING, "beta", T0, "", "op1"),
    ]
    with caplog.at_level(logging.ERROR):
        ops.apply(changes)
    assert "moved refused, dropped: a node cannot go from stopped to ready" in caplog.text
    assert [t.to_state for t in ops.transitions("n000")] == ["switching"]
    assert ops.transitions("n001") == []
    assert [t.to_state for t in ops.transitions("n002")] == ["switching"]
    assert [(e.node, e.step) for e in ops.events("op1")] == [("n000", "start")]
    found = ops.get("op1")
    assert found is not None
    assert [n.result for n in found.nodes] == ["pending", "pending", "changed"]


def test_many_nodes_asking_for_capacity_at_once_each_get_their_own_gpus(db: Database) -> None:
    store = Store(db.engine)
    gpus = (GpuRecord(index=0, uuid="GPU-0", name="g", memory_total_mb=24 * 1024),)
    store.register(NodeHello("n000", "id-n000", "n000", "127.0.0.1", "1", "static", "",
                             gpus=gpus), T0)  # fmt: skip

    async def scenario() -> list[list[str]]:
        capacity = StoredCapacity(db)
        return list(await asyncio.gather(*(capacity(BIG_CHAT, name) for name in NODES)))

    found = dict(zip(NODES, asyncio.run(scenario()), strict=True))
    assert found["n000"] == ["llm needs 2 GPUs with 72 GB each; n000 has 1 GPU (GPU 0: 24 GB)"]
    assert found["n001"] == ["llm needs 2 GPUs with 72 GB each; n001 has no GPUs"]
    assert len(found) == len(NODES)


def test_landed_is_done_once_every_write_asked_before_it_is_readable(db: Database) -> None:
    ops = OperationStore(db.engine)
    record = OperationRecord(id="op1", kind="test-walk", created=T0, configuration="beta")
    ops.create(record, NODES)

    async def main() -> list[str]:
        manager = OperationManager(SessionRegistry(), db, ops)
        for seq, node in enumerate(NODES, 1):
            manager.writes.add(ops.event_added, "op1", Event(seq, T0, node, "step", "s"))
        await asyncio.wait_for(manager.writes.landed(), 30)
        # On a reader thread, which waits for no queued write: it sees them all.
        events = await db.read(lambda _connection: ops.events("op1"))
        return [event.node for event in events]

    assert asyncio.run(main()) == NODES


def test_held_writes_wait_for_the_hold_to_end_or_for_someone_who_waits_on_them(
    db: Database,
) -> None:
    ops = OperationStore(db.engine)
    ops.create(OperationRecord(id="op1", kind="test-walk", created=T0), NODES)

    def event(seq: int) -> Event:
        return Event(seq, T0, NODES[0], "step", f"s{seq}")

    async def main() -> list[list[int]]:
        manager = OperationManager(SessionRegistry(), db, ops)
        seen: list[list[int]] = []

        async def stored() -> None:  # on the writer thread: behind every write handed over
            seen.append([e.seq for e in await db.call(ops.events, "op1")])

        manager.writes.hold(0.4)
        manager.writes.add(ops.event_added, "op1", event(1))
        await asyncio.sleep(0.1)
        await stored()  # held
        await asyncio.sleep(0.5)
        await stored()  # the hold ended
        manager.writes.hold(5.0)
        manager.writes.add(ops.event_added, "op1", event(2))
        await asyncio.wait_for(manager.writes.landed(), 2.0)  # a waiter is not held
        await stored()
        return seen

    assert asyncio.run(main()) == [[], [1], [1, 2]]
