"""Operations whose work runs on the hub itself (HubKind): one target "hub", a reservation
key held like a node, and the same events, progress, cancel and stored outcome as node kinds."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from hub.ops.batches import Outcome
from hub.ops.events import PROGRESS_KEPT
from hub.ops.kind import HUB_TARGET, HubKind, HubRun, Request
from hub.ops.manager import OperationError, OperationManager
from hub.sessions import SessionRegistry
from hub.store import Database
from hub.store.operations import OperationRecord, OperationStore

Work = Callable[[HubRun], Awaitable[Outcome]]


class Job(HubKind):
    """A hub kind whose work is the test's coroutine."""

    name = "test-job"

    def __init__(self, key: str, work: Work) -> None:
        self.key = key
        self.work = work

    @property
    def reservation(self) -> str:
        return f"test job {self.key}"

    async def run_hub(self, run: HubRun) -> Outcome:
        return await self.work(run)


def manager(db: Database) -> OperationManager:
    return OperationManager(SessionRegistry(), db, OperationStore(db.engine))


async def ended(mgr: OperationManager, operation_id: str) -> OperationRecord:
    steps = [event.step async for event in mgr.watch(operation_id)]
    assert steps[-1] == "done"
    # Once every write asked for so far has landed (a refused one is retried before the
    # read: on a loaded machine the read once came first and saw `running`).
    await mgr.writes.landed()
    found = await mgr.db.call(mgr.store.get, operation_id)
    assert found is not None
    return found


def test_a_hub_kind_runs_once_on_the_hub_with_events_and_a_stored_outcome(db: Database) -> None:
    async def work(run: HubRun) -> Outcome:
        run.report("resolve", "main is abc")
        run.progress("download", "1/2 files", 50.0)
        run.progress("download", "2/2 files", None)
        return Outcome("changed", "2 files, 3 bytes")

    async def scenario() -> tuple[OperationRecord, list[tuple[str, str, str, bool]]]:
        mgr = manager(db)
        # No node is known, none is named: a hub kind needs none.
        operation_id = await mgr.submit(Request(Job("a", work), []), [])
        seen = [(e.node, e.step, e.message, e.progress) async for e in mgr.watch(operation_id)]
        return await ended(mgr, operation_id), seen

    record, seen = asyncio.run(scenario())
    assert record.kind == "test-job" and record.status == "succeeded"
    assert record.message == "2 files, 3 bytes"
    assert [(n.node, n.result, n.message) for n in record.nodes] == [
        (HUB_TARGET, "changed", "2 files, 3 bytes")
    ]
    assert record.params["holds"] == "test job a"
    assert seen[:5] == [
        (HUB_TARGET, "begin", "started", False),
        (HUB_TARGET, "resolve", "main is abc", False),
        (HUB_TARGET, "download", "1/2 files", True),
        (HUB_TARGET, "download", "2/2 files", True),
        (HUB_TARGET, "result", "changed: 2 files, 3 bytes", False),
    ]
    assert seen[-1][1] == "done" and seen[-1][0] == ""


def test_the_reservation_is_held_while_it_runs_and_let_go_after(db: Database) -> None:
    async def scenario() -> None:
        mgr = manager(db)
        go = asyncio.Event()

        async def wait(_run: HubRun) -> Outcome:
            await go.wait()
            return Outcome("ok")

        first = Job("a", wait)
        operation_id = await mgr.submit(Request(first, []), [])
        with pytest.raises(OperationError) as refused:
            await mgr.submit(Request(Job("a", wait), []), [])
        assert refused.value.kind == "conflict"
        assert str(refused.value) == (
            f"test job a is already in operation {operation_id}: wait for it "
            f"(hubctl ops watch {operation_id}) and try again"
        )
        assert mgr.holder("test job a") == (operation_id, first)
        assert mgr.holder("test job b") is None
        # Another key runs at once; a node named like the target is not held by either.
        other = await mgr.submit(Request(Job("b", wait), []), [])
        assert HUB_TARGET not in mgr.busy
        go.set()
        assert (await ended(mgr, operation_id)).status == "succeeded"
        assert (await ended(mgr, other)).status == "succeeded"
        assert mgr.reservations.held == {} and mgr.holder("test job a") is None
        again = await mgr.submit(Request(Job("a", wait), []), [])
        assert (await ended(mgr, again)).status == "succeeded"

    asyncio.run(scenario())


def test_cancel_reaches_the_work_and_the_operation_ends_cancelled(db: Database) -> None:
    async def scenario() -> OperationRecord:
        mgr = manager(db)
        started = asyncio.Event()

        async def work(run: HubRun) -> Outcome:
            started.set()
            await run.cancel.wait()
            return Outcome("cancelled", "stopped; 5 MB kept for a resume")

        operation_id = await mgr.submit(Request(Job("a", work), []), [])
        await started.wait()
        await mgr.cancel(operation_id, "tester")
        record = await ended(mgr, operation_id)
        assert mgr.reservations.held == {}
        with pytest.raises(OperationError, match="already ended"):
            await mgr.cancel(operation_id, "tester")
        return record

    record = asyncio.run(scenario())
    assert record.status == "cancelled"
    assert record.message == "stopped; 5 MB kept for a resume"
    assert record.nodes[0].result == "cancelled"


def test_a_failure_and_a_crash_end_the_operation_failed_and_free_the_key(db: Database) -> None:
    async def fails(_run: HubRun) -> Outcome:
        return Outcome("failed", "repository org/x not found: check the name")

    async def crashes(_run: HubRun) -> Outcome:
        raise RuntimeError("boom")

    async def scenario() -> tuple[OperationRecord, OperationRecord, list[str]]:
        mgr = manager(db)
        failed = await ended(mgr, await mgr.submit(Request(Job("a", fails), []), []))
        crashed = await ended(mgr, await mgr.submit(Request(Job("a", crashes), []), []))
        return failed, crashed, list(mgr.reservations.held)

    failed, crashed, held = asyncio.run(scenario())
    assert (failed.status, failed.message) == (
        "failed", "repository org/x not found: check the name"
    )  # fmt: skip
    assert crashed.status == "failed" and crashed.message == "internal error: boom"
    assert held == []


def test_progress_is_bounded_in_storage_like_an_agents(db: Database) -> None:
    async def chatty(run: HubRun) -> Outcome:
        for i in range(PROGRESS_KEPT + 7):
            run.progress("download", f"{i} bytes", None)
        return Outcome("ok", "done")

    async def scenario() -> tuple[OperationRecord, int]:
        mgr = manager(db)
        operation_id = await mgr.submit(Request(Job("a", chatty), []), [])
        record = await ended(mgr, operation_id)
        events = await db.call(mgr.store.events, operation_id)
        return record, sum(e.progress for e in events)

    record, kept = asyncio.run(scenario())
    assert kept == PROGRESS_KEPT
    assert record.nodes[0].progress_dropped == 7
