"""An operation manager's writes, gathered over one turn of the event loop and written in
one transaction.

A `switch --all` moves every node at once: each node's begin, events, result and state change
used to be a transaction of its own, queued one by one on the hub's one database thread (a
`switch --all` of 1,000 nodes queued some 15,000). Gathered, the nodes that move in the same
turn of the loop cost one transaction between them, and the database thread is free sooner
for what waits behind it. Order holds: the batch goes to the database thread, in order with
every other queued write, at the end of the turn in which its first write was asked for; a
manager that reads what it wrote calls `flush` first.

While a wide operation sends its first tasks, its writes are held (`hold`) and handed over
when that ends: the database thread's Python work competes with the event loop for the GIL,
and every node waits for its first task then (at 10,000 nodes the hub had handed every first
task to gRPC 0.86 s after the first instead of 1.17 s). `flush` still writes at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from hub.store import Database
from hub.store.op_rows import Change
from hub.store.operations import OperationStore


class Writes:
    def __init__(self, db: Database, store: OperationStore) -> None:
        self.db = db
        self.store = store
        self._changes: list[Change] = []
        self._landed: list[Callable[[], object]] = []
        self._held_until = 0.0  # loop time

    def hold(self, seconds: float) -> None:
        """Gather for `seconds` (or until a `flush`) before handing writes over."""
        if seconds > 0:
            loop = asyncio.get_running_loop()
            self._held_until = max(self._held_until, loop.time() + seconds)

    def add(self, fn: Callable[..., None], *args: Any,
            landed: Callable[[], object] | None = None) -> None:  # fmt: skip
        """Queue `fn(session, *args)`; `landed` runs (on the database thread) once written."""
        if not self._changes:
            try:
                loop = asyncio.get_running_loop()
                if self._held_until > loop.time():
                    loop.call_at(self._held_until, self.flush)
                else:
                    loop.call_soon(self.flush)
            except RuntimeError:  # no loop (a caller outside the hub's loop): write now
                self._changes.append(Change(fn, *args))
                self._landed += [landed] if landed is not None else []
                self.flush()
                return
        self._changes.append(Change(fn, *args))
        if landed is not None:
            self._landed.append(landed)

    def landed(self) -> asyncio.Future[None]:
        """Done once every write asked for so far is written (or has waited behind a refusing
        database, as they do): a reader thread then sees them."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def mark() -> None:
            if not done.done():
                done.set_result(None)

        self.add(_nothing, landed=lambda: loop.call_soon_threadsafe(mark))
        self.flush()  # somebody waits for it: not held
        return done

    def flush(self) -> None:
        """Hand what is gathered to the database thread now."""
        if not self._changes:
            return
        changes, self._changes = self._changes, []
        landed, self._landed = self._landed, []
        self.db.submit(self.store.apply, changes, landed=_all(landed) if landed else None)


def _nothing(_session: object) -> None:
    """A write that writes nothing: it lands after every write asked for before it."""


def _all(callbacks: list[Callable[[], object]]) -> Callable[[], None]:
    def run() -> None:
        for callback in callbacks:
            callback()

    return run
