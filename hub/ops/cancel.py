"""An operation's cancel: an asyncio.Event that also wakes the steps waiting on it directly.

A `switch --all` has a step in flight on every node at once. Waiting for the cancel with
`event.wait()` costs a task per step, and ending each of those tasks removes its waiter from
the event's list (O(nodes) each, O(nodes²) per turn of thousands of steps). A step registers
a plain future here instead (a set: O(1) in and out), woken by `set`."""

from __future__ import annotations

import asyncio


class Cancel(asyncio.Event):
    def __init__(self) -> None:
        super().__init__()
        self._woken: set[asyncio.Future[None]] = set()

    def set(self) -> None:
        super().set()
        for future in list(self._woken):
            if not future.done():
                future.set_result(None)

    def watch(self, future: asyncio.Future[None]) -> None:
        """Wake `future` when the operation is cancelled (at once when it already is)."""
        if self.is_set():
            if not future.done():
                future.set_result(None)
            return
        self._woken.add(future)

    def unwatch(self, future: asyncio.Future[None]) -> None:
        self._woken.discard(future)
