from __future__ import annotations

import asyncio

import pytest

from hub.ops.batches import Outcome, run_batches, too_many_failures


def run(nodes: list[str], serial: int, max_fail: float, failing: set[str]
        ) -> tuple[dict[str, Outcome], list[str], int]:  # fmt: skip
    started: list[str] = []
    peak = 0
    active = 0

    async def step(node: str) -> Outcome:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.01 * (1 + len(node) % 3))
        active -= 1
        return Outcome("failed" if node in failing else "changed")

    results = asyncio.run(run_batches(nodes, serial, max_fail, step, started.append))
    return results, started, peak


def test_serial_is_a_sliding_window() -> None:
    nodes = [f"n{i}" for i in range(7)]
    results, started, peak = run(nodes, 2, 0, set())
    assert peak == 2 and started == nodes
    assert {o.result for o in results.values()} == {"changed"}


def test_serial_zero_means_all_at_once() -> None:
    _, _, peak = run([f"n{i}" for i in range(5)], 0, 0, set())
    assert peak == 5


def test_stop_starting_once_max_fail_is_exceeded() -> None:
    nodes = ["a", "b", "c", "d"]
    results, started, _ = run(nodes, 1, 25, {"a", "b"})
    # a fails: 25% is not more than 25%, b starts; b fails: 50% > 25%, c and d are skipped.
    assert started == ["a", "b"]
    assert [results[n].result for n in nodes] == ["failed", "failed", "skipped", "skipped"]
    assert "more than 25% of nodes failed" in results["c"].message


@pytest.mark.parametrize(("failed", "total", "limit", "stop"), [
    (0, 4, 0, False), (1, 4, 0, True), (1, 4, 25, False), (2, 4, 25, True), (4, 4, 100, False),
])  # fmt: skip
def test_max_fail_must_be_exceeded(failed: int, total: int, limit: float, stop: bool) -> None:
    assert too_many_failures(failed, total, limit) is stop


def test_a_cancel_starts_no_further_node_and_skips_the_rest() -> None:
    async def scenario() -> dict[str, Outcome]:
        cancel = asyncio.Event()

        async def step(node: str) -> Outcome:
            if node == "n1":
                cancel.set()
                return Outcome("cancelled", "cancelled during start")
            await asyncio.sleep(0.01)
            return Outcome("changed")

        nodes = [f"n{i}" for i in range(5)]
        return await run_batches(nodes, 2, 100, step, cancel=cancel)

    results = asyncio.run(scenario())
    assert results["n0"] == Outcome("changed")
    assert results["n1"].result == "cancelled"
    assert {results[n].result for n in ("n2", "n3", "n4")} == {"skipped"}
    assert results["n4"].message == "not started: the operation was cancelled"
