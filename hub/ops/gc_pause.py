"""The cyclic garbage collector paused while a wide operation sends its first tasks.

A `switch --all` of 10,000 nodes makes tens of thousands of tasks, futures and messages in
its first turns of the event loop. They set off collections, and full ones walk every
connected agent's objects: in-process, 10,000 nodes had their first task queued 0.34-0.54 s
after the operation began with the collector off, 0.9-1.3 s with it on (the start-up heap
frozen, as the hub's is). Nothing is lost by the pause: reference counting still frees all
that is not in a cycle, and the collector is on again at the pause's end, at most PAUSE_MAX_S
after it began (cyclic garbage of those seconds waits until then).
"""

from __future__ import annotations

import asyncio
import gc
from typing import Protocol

WIDE = 500  # nodes started at once from which an operation pauses the collector
PER_NODE_S = 0.0005  # pause per node started at once...
PAUSE_MIN_S, PAUSE_MAX_S = 1.0, 10.0  # ...within these bounds


class Collector(Protocol):
    def disable(self) -> None: ...
    def enable(self) -> None: ...
    def isenabled(self) -> bool: ...


class GcPause:
    """Pauses the collector for a while; pauses that overlap end at the last one's end. A
    collector someone else turned off is left alone."""

    def __init__(self, collector: Collector = gc) -> None:
        self.collector = collector
        self._until = 0.0
        self._timer: asyncio.TimerHandle | None = None

    @property
    def paused(self) -> bool:
        return self._timer is not None

    def started(self, nodes: int) -> float:
        """An operation starts `nodes` nodes at once: pause, if that is wide; how long (0: not
        paused), for what else waits until the first tasks are out (the operation's writes)."""
        if nodes < WIDE:
            return 0.0
        seconds = min(PAUSE_MAX_S, max(PAUSE_MIN_S, nodes * PER_NODE_S))
        self.pause(seconds)
        return seconds

    def pause(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        until = loop.time() + seconds
        if self._timer is None:
            if not self.collector.isenabled():
                return
            self.collector.disable()
        elif until <= self._until:
            return
        else:
            self._timer.cancel()
        self._until = until
        self._timer = loop.call_at(until, self.resume)

    def resume(self) -> None:
        """The collector on again (at the pause's end, or at the hub's stop)."""
        if self._timer is None:
            return
        self._timer.cancel()
        self._timer = None
        self.collector.enable()
