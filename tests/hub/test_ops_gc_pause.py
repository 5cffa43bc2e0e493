"""The garbage collector is off while a wide operation sends its first tasks, and on again
after: by the pause's end, at the hub's stop, never turned on when someone else turned it off."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from hub.ops import gc_pause
from hub.ops.batches import Outcome
from hub.ops.gc_pause import GcPause
from hub.ops.kind import NodeRun, OperationKind, Request
from hub.ops.manager import OperationManager
from hub.sessions import SessionRegistry
from hub.store import Database
from hub.store.operations import OperationStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Switch:
    """The process's collector switch, as GcPause sees it (recorded, not the real one)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.calls: list[str] = []

    def disable(self) -> None:
        self.calls.append("disable")
        self.enabled = False

    def enable(self) -> None:
        self.calls.append("enable")
        self.enabled = True

    def isenabled(self) -> bool:
        return self.enabled


def test_a_narrow_operation_leaves_the_collector_alone() -> None:
    async def main() -> None:
        switch = Switch()
        GcPause(switch).started(gc_pause.WIDE - 1)
        assert switch.calls == []

    asyncio.run(main())


def test_a_wide_one_pauses_it_until_the_pause_ends_and_overlaps_extend_it() -> None:
    async def main() -> None:
        switch = Switch()
        pause = GcPause(switch)
        pause.pause(0.05)
        pause.pause(0.2)  # a second wide operation: the pause ends at its end
        pause.pause(0.01)  # a shorter one changes nothing
        await asyncio.sleep(0.1)
        assert switch.calls == ["disable"] and not switch.enabled and pause.paused
        await asyncio.sleep(0.2)
        assert switch.calls == ["disable", "enable"] and switch.enabled and not pause.paused

    asyncio.run(main())


def test_a_collector_turned_off_elsewhere_stays_off() -> None:
    async def main() -> None:
        switch = Switch(enabled=False)
        pause = GcPause(switch)
        pause.pause(0.01)
        await asyncio.sleep(0.05)
        pause.resume()
        assert switch.calls == [] and not switch.enabled

    asyncio.run(main())


class Seen(OperationKind):
    """Records whether the collector ran while each node's step began."""

    name = "test-seen"

    def __init__(self) -> None:
        self.enabled: list[bool] = []

    async def run_node(self, run: NodeRun) -> Outcome:
        self.enabled.append(gc.isenabled())
        return Outcome("ok", "")


@pytest.fixture
def collector_on() -> Iterator[None]:
    assert gc.isenabled()
    yield
    gc.enable()  # whatever the test did


def test_a_wide_operation_runs_with_the_collector_off_and_the_stop_turns_it_on(
    db: Database, collector_on: None
) -> None:
    nodes = [f"n{i:04d}" for i in range(gc_pause.WIDE)]
    ops = OperationStore(db.engine)

    async def main() -> None:
        registry = SessionRegistry()
        for name in nodes:
            registry.open(name, f"id-{name}", "127.0.0.1", 0.0, T0)
        manager = OperationManager(registry, db, ops)
        wide, narrow = Seen(), Seen()
        first = await manager.submit(Request(wide, nodes), nodes)
        async for _ in manager.watch(first):
            pass
        assert wide.enabled == [False] * len(nodes) and manager.gc_pause.paused
        manager.gc_pause.resume()
        second = await manager.submit(Request(narrow, nodes, serial=10), nodes)
        async for _ in manager.watch(second):
            pass
        assert narrow.enabled == [True] * len(nodes)
        await manager.submit(Request(Seen(), nodes), nodes)
        assert not gc.isenabled()
        await manager.shutdown()
        assert gc.isenabled()

    asyncio.run(main())
