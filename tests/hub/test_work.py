"""hub.work: real worker processes; a full lane refuses at once, an overrun is killed."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from hub.assign.model import AssignError
from hub.configs import ConfigError, parse_configuration
from hub.work import Busy, Lane, Overrun, ProcessWorker, WorkerDied


def pid() -> int:
    return os.getpid()


def spin(seconds: float) -> float:
    """CPU-bound for `seconds` (the GIL held all along, as CP-SAT's Python side would)."""
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
    return seconds


def fail(kind: str) -> None:
    raise AssignError(kind, f"refused as {kind}")


def die() -> None:
    os._exit(3)


def test_work_runs_in_another_process_and_errors_come_back_whole() -> None:
    async def main() -> None:
        lane = Lane("tests", workers=1, waiting=0)
        try:
            first = await lane.run(pid, limit_s=30)
            assert first != os.getpid()
            assert await lane.run(pid, limit_s=30) == first  # the worker is kept warm
            with pytest.raises(AssignError) as caught:
                await lane.run(fail, "conflict", limit_s=30)
            assert caught.value.kind == "conflict" and str(caught.value) == "refused as conflict"
            with pytest.raises(ConfigError, match=r"x\.yaml: invalid YAML"):
                await lane.run(parse_configuration, "x", "a: [", Path("x.yaml"), limit_s=30)
            assert await lane.run(pid, limit_s=30) == first  # errors do not cost the worker
        finally:
            lane.close()

    asyncio.run(main())


def test_a_full_lane_refuses_at_once_and_the_event_loop_keeps_running() -> None:
    async def main() -> None:
        lane = Lane("a heavy thing", workers=1, waiting=1)
        try:
            await lane.run(pid, limit_s=30)  # started: the timings below are the work's own
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.05)
                    ticks += 1

            clock = asyncio.create_task(ticker())
            running = asyncio.create_task(lane.run(spin, 1.5, limit_s=30))
            waiting = asyncio.create_task(lane.run(spin, 0.1, limit_s=30))
            await asyncio.sleep(0.2)
            started = time.monotonic()
            with pytest.raises(Busy) as caught:
                await lane.run(spin, 0.1, limit_s=30)
            assert time.monotonic() - started < 0.5
            assert str(caught.value) == (
                "the hub is busy with a heavy thing (1 running, 1 waiting): try again in a moment"
            )
            assert await running == 1.5 and await waiting == 0.1
            clock.cancel()
            # 1.6 s of CPU-bound work ran while the loop ticked every 50 ms (loosely: shared cores)
            assert ticks >= 10, ticks
            assert lane.refused == 1
        finally:
            lane.close()

    asyncio.run(main())


def test_an_overrun_is_killed_and_the_next_call_gets_a_fresh_worker() -> None:
    async def main() -> None:
        lane = Lane("placement", workers=1, waiting=0)
        try:
            before = await lane.run(pid, limit_s=30)
            started = time.monotonic()
            with pytest.raises(Overrun) as caught:
                await lane.run(spin, 60, limit_s=0.5, hint="use balanced")
            assert time.monotonic() - started < 10
            assert str(caught.value) == (
                "placement did not finish within 0.5 s and was stopped: use balanced"
            )
            with pytest.raises(ProcessLookupError):
                os.kill(before, 0)  # the overrunning worker is gone
            after = await lane.run(pid, limit_s=30)
            assert after != before
            with pytest.raises(WorkerDied):
                await lane.run(die, limit_s=30)
            assert await lane.run(pid, limit_s=30) not in (before, after)
        finally:
            lane.close()

    asyncio.run(main())


def test_close_stops_every_worker() -> None:
    async def main() -> None:
        lane = Lane("tests", workers=2, waiting=0)
        pids = await asyncio.gather(lane.run(pid, limit_s=30), lane.run(pid, limit_s=30))
        lane.close()
        for worker in pids:
            with pytest.raises(ProcessLookupError):
                os.kill(worker, 0)

    asyncio.run(main())


def test_a_lane_warmed_ahead_answers_its_first_call_from_that_worker() -> None:
    async def main() -> None:
        started: list[ProcessWorker] = []

        def start() -> ProcessWorker:
            started.append(ProcessWorker())
            return started[-1]

        lane = Lane("tests", workers=2, waiting=0, start=start)
        try:
            await lane.warm()
            await lane.warm()  # one is there already: nothing more
            assert len(started) == 1
            assert await lane.run(pid, limit_s=30) == started[0].process.pid
            assert len(started) == 1
        finally:
            lane.close()
        await lane.warm()  # closed: starts nothing
        assert len(started) == 1

    asyncio.run(main())
