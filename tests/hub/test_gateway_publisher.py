"""The Publisher behind WatchRoutes: a table computation that fails with a bug is logged and
the next one goes out; the loop never ends while someone watches."""

from __future__ import annotations

import asyncio
import logging

import pytest

from hub.gateway.routes import RouteTable
from hub.gateway.service import Publisher


def test_a_computation_that_raises_once_does_not_freeze_the_table(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = 0

    async def compute() -> RouteTable:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise KeyError("a bug")
        return RouteTable(errors=(f"table {calls}",))

    async def main() -> list[tuple[int, RouteTable]]:
        publisher = Publisher(compute, tick_s=0.01, first=100)
        seen: list[tuple[int, RouteTable]] = []

        async def follow() -> None:
            async for generation, table in publisher.watch():
                seen.append((generation, table))
                if len(seen) == 3:
                    return

        await asyncio.wait_for(follow(), 5)
        await publisher.close()
        return seen

    with caplog.at_level(logging.ERROR, logger="hub.gateway.service"):
        seen = asyncio.run(main())
    assert [t.errors for _, t in seen] == [("table 1",), ("table 3",), ("table 4",)]
    assert [g for g, _ in seen] == [101, 102, 103]
    assert "cannot compute the table" in caplog.text and "KeyError" in caplog.text
