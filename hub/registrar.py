"""Agents' hellos registered in batches: at a hub restart thousands arrive within seconds.

One transaction per hello on the one database thread made each of them wait behind all the
others (at 5,000 agents, for longer than the liveness timeout). Here every hello joins a
queue; one task writes whatever waits, up to `batch` hellos, in one database call and wakes
their callers, and the next batch gathers while that one is written. A lone hello is written
at once: nothing waits for a batch to fill.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime

from hub.store import Database, NodeHello
from hub.store.register import Hello, register_hellos

log = logging.getLogger(__name__)
BATCH = 500  # hellos in one transaction: about 0.2 s of the database thread on SQLite


class RegistrarClosed(Exception):
    """The hub stops: a hello still waiting is not registered."""


@dataclass(frozen=True)
class _Waiting:
    hello: Hello
    done: asyncio.Future[None]


class Registrar:
    """`await register(hello, now)` returns once the node is recorded, as Store.register does,
    or raises what failed that node's record (a storage fault fails every hello of its batch).

    A caller cancelled before its batch is written is left out of it, so its stream's
    `mark_down`, queued after the cancellation, cannot land before a late registration."""

    def __init__(self, db: Database, batch: int = BATCH) -> None:
        self.db = db
        self.batch = batch
        self._queue: list[_Waiting] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.batches = 0  # written so far (for tests and benchmarks)
        self.largest = 0

    async def register(self, hello: NodeHello, now: datetime) -> None:
        if self._closed:
            raise RegistrarClosed("the hub is stopping")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(_Waiting(Hello(hello, now), done))
        self._wake.set()
        if self._task is None:
            self._task = asyncio.create_task(self._drain(), name="registrar")
        await done

    async def close(self) -> None:
        """Stop writing; hellos still queued fail with RegistrarClosed."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        waiting, self._queue = self._queue, []
        for item in waiting:
            if not item.done.done():
                item.done.set_exception(RegistrarClosed("the hub is stopping"))

    async def _drain(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                taken, self._queue = self._queue[: self.batch], self._queue[self.batch :]
                await self._write([item for item in taken if not item.done.done()])
                del taken  # not held while waiting: up to 500 hellos with their GPUs

    async def _write(self, batch: list[_Waiting]) -> None:
        if not batch:
            return
        self.batches += 1
        self.largest = max(self.largest, len(batch))
        try:
            failed = await self.db.call(
                register_hellos, self.db.engine, [item.hello for item in batch]
            )
        except asyncio.CancelledError:
            for item in batch:  # close() cancelled us mid-write: the callers must not hang
                if not item.done.done():
                    item.done.set_exception(RegistrarClosed("the hub is stopping"))
            raise
        except Exception as exc:  # e.g. the database refuses writes: every caller learns it
            log.warning("registration of %d nodes failed: %s", len(batch), exc)
            failed = {item.hello.hello.name: exc for item in batch}
        for item in batch:
            if item.done.done():  # the caller went away meanwhile
                continue
            error = failed.get(item.hello.hello.name)
            if error is None:
                item.done.set_result(None)
            else:
                item.done.set_exception(error)
