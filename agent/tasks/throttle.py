"""Progress of one task, throttled so a chatty task cannot flood the link to the hub.

At most one event per `every` seconds goes out. An event that comes sooner is held back, and
replaced by any newer one, until its time comes. The first event of a new phase goes at once,
after the held-back last event of the phase before; `flush` sends what is held back before
the task's result, so the hub always sees where the task ended.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

EVENTS_PER_S = 4.0


@dataclass(frozen=True)
class Progress:
    phase: str
    message: str
    percent: float | None = None

    def describe(self) -> str:
        return f"{self.phase}: {self.message}" if self.message else self.phase


class Throttle:
    def __init__(
        self,
        send: Callable[[Progress], None],
        every: float = 1 / EVENTS_PER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._send = send
        self.every = every
        self.clock = clock
        self.last: Progress | None = None  # what the task reported last, sent or not
        self._held: Progress | None = None
        self._sent_at = -float("inf")
        self._timer: asyncio.TimerHandle | None = None

    def __call__(self, phase: str, message: str, percent: float | None = None) -> None:
        event = Progress(phase, message, percent)
        new_phase = self.last is None or self.last.phase != phase
        self.last = event
        if new_phase:
            self.flush()
            self._out(event)
        elif self.clock() - self._sent_at >= self.every:
            self._out(event)
        else:
            self._held = event
            if self._timer is None:
                delay = self._sent_at + self.every - self.clock()
                self._timer = asyncio.get_running_loop().call_later(delay, self.flush)

    def flush(self) -> None:
        """Send the held-back event now, if there is one."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._held is not None:
            self._out(self._held)

    def _out(self, event: Progress) -> None:
        self._held = None
        self._sent_at = self.clock()
        self._send(event)
