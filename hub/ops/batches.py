"""Run a step on many nodes: a sliding window of `serial` at a time, and no new node once
more than `max_fail_percent` of all nodes failed (exceeded, not equalled, as in Ansible) or
once the operation is cancelled."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

FAILED = frozenset({"failed", "unreachable"})


@dataclass(frozen=True)
class Outcome:
    result: str  # ok, changed, failed, unreachable, skipped, cancelled
    message: str = ""


def too_many_failures(failed: int, total: int, max_fail_percent: float) -> bool:
    return total > 0 and failed * 100 > max_fail_percent * total


async def run_batches(
    nodes: Sequence[str],
    serial: int,
    max_fail_percent: float,
    step: Callable[[str], Coroutine[Any, Any, Outcome]],
    on_start: Callable[[str], None] = lambda _node: None,
    on_result: Callable[[str, Outcome], None] = lambda _node, _outcome: None,
    cancel: asyncio.Event | None = None,
) -> dict[str, Outcome]:
    """Each node's outcome; nodes never started are `skipped` with the reason. Setting
    `cancel` starts no further node (the running ones see it through their own steps)."""
    cancel = cancel or asyncio.Event()
    # Each node's task says it ended through a callback: a node's end costs O(1), not a wait
    # on every running task (O(N) each, O(N^2) for a `switch --all` of 10,000 nodes).
    ended: list[asyncio.Task[Outcome]] = []
    woken = asyncio.Event()

    def end(task: asyncio.Task[Outcome]) -> None:
        ended.append(task)
        woken.set()

    cancelled = asyncio.ensure_future(cancel.wait())
    cancelled.add_done_callback(lambda _: woken.set())
    window = serial if serial > 0 else len(nodes)
    results: dict[str, Outcome] = {}
    queue = deque(nodes)
    running: dict[asyncio.Task[Outcome], str] = {}
    failed = 0
    try:
        while queue or running:
            while (
                queue
                and len(running) < window
                and not cancel.is_set()
                and not too_many_failures(failed, len(nodes), max_fail_percent)
            ):
                node = queue.popleft()
                on_start(node)
                task = asyncio.create_task(step(node))
                running[task] = node
                task.add_done_callback(end)
            if not running:
                break
            # Once cancelled, wait for the running nodes only (their steps end on the cancel too).
            if not ended:
                woken.clear()
                await woken.wait()
            finished, ended[:] = ended[:], []
            for task in finished:
                node = running.pop(task)
                outcome = task.result()
                results[node] = outcome
                failed += outcome.result in FAILED
                on_result(node, outcome)
    finally:
        # A node's step that raised, or a cancelled operation: no step may outlive the run.
        cancelled.cancel()
        for task in running:
            task.cancel()
        await asyncio.gather(cancelled, *running, return_exceptions=True)
    why = (
        "the operation was cancelled"
        if cancel.is_set()
        else f"more than {max_fail_percent:g}% of nodes failed"
    )
    for node in queue:
        outcome = Outcome("skipped", f"not started: {why}")
        results[node] = outcome
        on_result(node, outcome)
    return results
