"""When the agent heartbeats on one stream: each beat in its slot (agent/pace.py Beats), and an
early beat when a change waits that the hub acts on at once (what runs or its health, a GPU
lost or back, the inventory, environments, model cache), instead of up to an interval later.
Also what a Welcome or Pace message asks for, and the words the log gives it."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable

from google.protobuf.duration_pb2 import Duration

from agent.pace import Beats, Pace
from gpufleet.v1 import agent_link_pb2 as pb

EARLY_CHECK_S = 1.0  # between beats, a change the hub must hear is looked for this often


class Heartbeats:
    """`build(seq)` makes a heartbeat, `send` queues it; `pending()` says whether a change
    waits. With early_check_s 0 there are no early beats (nothing is looked for)."""

    def __init__(
        self,
        interval: float,
        rng: random.Random,
        build: Callable[[int], Awaitable[pb.Heartbeat]],
        send: Callable[[pb.AgentMessage], None],
        pending: Callable[[], Awaitable[bool]],
        early_check_s: float = EARLY_CHECK_S,
    ) -> None:
        # The hub counts liveness from its welcome: the first beat falls within an interval.
        self.beats = Beats(interval, asyncio.get_running_loop().time(), rng)
        self.build = build
        self.send = send
        self.pending = pending
        self.early_check_s = early_check_s
        self._repaced = asyncio.Event()

    def repace(self, interval: float) -> None:
        """The hub changed the interval; a shorter one wakes the wait at once."""
        self.beats.repace(interval, asyncio.get_running_loop().time())
        self._repaced.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        seq = 0
        while True:
            early = await self._wait()
            self.send(pb.AgentMessage(heartbeat=await self.build(seq := seq + 1)))
            (self.beats.early if early else self.beats.beat)(loop.time())

    async def _wait(self) -> bool:
        """Until the regular beat is due (False), or a change waits and an early beat is
        allowed (True): looked for every early_check_s once Beats allows one."""
        loop = asyncio.get_running_loop()
        while (now := loop.time()) < self.beats.due:
            wake = self.beats.due
            allowed = self._early_from(now)
            if allowed is not None:
                wake = min(wake, max(allowed, now + self.early_check_s))
            self._repaced.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(wake):
                    await self._repaced.wait()
            now = loop.time()
            allowed = self._early_from(now)
            if allowed is not None and allowed <= now and await self.pending():
                return True
        return False

    def _early_from(self, now: float) -> float | None:
        return self.beats.early_from(now) if self.early_check_s > 0 else None


def pace_from(heartbeat: Duration, telemetry: Duration) -> Pace | None:
    """The pace a Welcome or Pace message asks for; None without a heartbeat interval."""
    heartbeat_s = heartbeat.ToTimedelta().total_seconds()
    if heartbeat_s <= 0:
        return None
    return Pace(heartbeat_s, max(0.0, telemetry.ToTimedelta().total_seconds()))


def telemetry_words(pace: Pace) -> str:
    if pace.telemetry_s <= 0:
        return "telemetry with every heartbeat"
    return f"telemetry when changed or every {pace.telemetry_s:g} s"
