"""Live agent streams, one per connected node. Pure bookkeeping: callers pass the time."""

from __future__ import annotations

import asyncio
import random
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

import grpc

from gpufleet.v1 import agent_link_pb2 as pb
from hub.states import Running
from hub.store import GpuRecord, GpuTelemetryRecord

BURST = 10.0
RATE = 4.0
PROGRESS_BURST = 40.0
PROGRESS_RATE = 20.0
ABANDONED_KEPT = 256  # task ids whose late result is accepted and dropped
MISSED_HEARTBEATS = 3  # a session this many of its intervals silent is closed
# What reaches the database while a node is connected (its session is authoritative then):
# changed telemetry at most this often per node, Node.last_seen at most this often.
TELEMETRY_WRITE_S = 60.0
SEEN_WRITE_S = 300.0


@dataclass(frozen=True)
class TaskProgress:
    """A running task's report (from a TaskEvent), routed to whoever asked for the task."""

    phase: str
    message: str
    percent: float | None = None


OnProgress = Callable[[TaskProgress], None]


class NameInUse(Exception):
    def __init__(self, name: str, address: str) -> None:
        super().__init__(
            f"node name {name!r} is already connected from {address}: another agent uses this "
            "name; give this host a unique --name"
        )


class NodeDisconnected(Exception):
    pass


@dataclass(frozen=True)
class Close:
    """Outbox sentinel: end the stream, with an error status when code is set."""

    reason: str
    code: grpc.StatusCode | None = None


class Outbox:
    """What the hub sends one agent, read by its stream alone: an asyncio.Queue holds four
    deques and an Event (about 3.5 KiB); this holds a list while messages wait and a future
    while its reader waits."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[pb.HubMessage | Close] = []
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: pb.HubMessage | Close) -> None:
        self._items.append(item)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def get_nowait(self) -> pb.HubMessage | Close:
        if not self._items:
            raise asyncio.QueueEmpty
        return self._items.pop(0)

    def empty(self) -> bool:
        return not self._items

    async def get(self) -> pb.HubMessage | Close:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.pop(0)


# Slots: a session's attributes in its object, not in a dict of their own (about 1 KiB less
# per connected agent).
@dataclass(eq=False, slots=True)
class AgentSession:
    name: str
    agent_id: str
    address: str
    last_beat: float  # monotonic seconds
    last_seen: datetime
    # The heartbeat interval this agent was told (Welcome, then Pace) and, after a pace change
    # until its next heartbeat, the shortest and longest interval it may still be following.
    interval: float = 5.0
    telemetry_interval: float = 60.0
    paced: tuple[float, float] | None = None
    # The registry's stall credit at the last heartbeat: time the hub itself was stalled since
    # then is not the agent's silence.
    credit_at_beat: float = 0.0
    outbox: Outbox = field(default_factory=Outbox)
    # Tasks sent and not answered yet, and who follows their progress: made by the first task
    # (two empty dictionaries are about 130 bytes of each of 10,000 mostly idle sessions).
    pending: dict[str, asyncio.Future[pb.TaskResult]] | None = None
    listeners: dict[str, OnProgress] | None = None
    # Tasks the hub stopped waiting for: their result may still come, and is not an error.
    abandoned: OrderedDict[str, None] | None = None  # made by the first abandon()
    closed: Close | None = None
    # Its hello waits to be registered (no Welcome yet): not ready, and no silence counts.
    registering: bool = False
    # Latest GPU telemetry (authoritative while connected; `telemetry_dirty` until written,
    # which happens at most every TELEMETRY_WRITE_S and when the node goes down), and each GPU's
    # known state. `*_written` are monotonic times of the last writes.
    telemetry: tuple[GpuTelemetryRecord, ...] = ()
    telemetry_at: datetime | None = None
    telemetry_dirty: bool = False
    # Its GPUs' processes changed: placement reads them from the database, so the next batch
    # writes them, not the one a minute later.
    processes_dirty: bool = False
    telemetry_written: float = 0.0
    seen_written: float = 0.0
    gpu_states: dict[int, str] = field(default_factory=dict)
    gpu_uuids: dict[int, str] = field(default_factory=dict)
    # Progress events of its tasks: a burst, then at most PROGRESS_RATE a second (the agent
    # sends at most 4 a second per task; more is a broken or hostile agent, dropped).
    progress_allowance: float = PROGRESS_BURST
    progress_at: float = 0.0
    # Where its model servers are reached (its hello's advertise_address; "": its hostname).
    advertised: str = ""
    # The compose project the agent runs (from hello, then from each task's result).
    project: Running | None = None
    # A changed inventory waiting for the next batched write: (probe, error, gpus, preflight).
    inventory: tuple[str, str, tuple[GpuRecord, ...], tuple[str, ...]] | None = None
    # Heartbeat token bucket: a burst of BURST, then at most RATE times the agreed rate. It
    # refills by the time between the agent's send times (Heartbeat.sent_at), so heartbeats that
    # queued up while the hub's event loop was stalled, and then arrive together, were still
    # sent at the agreed rate and are not a flood. `allowance_at` is that time on the hub's
    # monotonic clock (send time + `sent_offset`, anchored at the stream's opening); it never
    # runs ahead of the hub's clock, so a lying or jumping agent clock cannot buy more than real
    # time: a clock that steps re-anchors the offset at no gain. Without a send time, heartbeats
    # count by arrival.
    allowance: float = BURST
    allowance_at: float = -1.0  # set to the stream's opening
    sent_offset: float | None = None

    def __post_init__(self) -> None:
        if self.allowance_at < 0:
            self.allowance_at = self.last_beat

    @property
    def liveness_interval(self) -> float:
        """The interval its silence is measured in: after a pace change, the longer one."""
        return self.interval if self.paced is None else self.paced[1]

    @property
    def flood_interval(self) -> float:
        """The interval its rate is bounded by: after a pace change, the shorter one."""
        return self.interval if self.paced is None else self.paced[0]

    def pace(self, heartbeat_s: float, telemetry_s: float, message: pb.HubMessage) -> None:
        """Tell the agent a new pace (`message` says it on the wire)."""
        if heartbeat_s == self.interval and telemetry_s == self.telemetry_interval:
            return
        low, high = self.paced or (self.interval, self.interval)
        self.paced = (min(low, heartbeat_s), max(high, heartbeat_s))
        self.interval, self.telemetry_interval = heartbeat_s, telemetry_s
        if self.closed is None:
            self.send(message)

    def report(self, telemetry: tuple[GpuTelemetryRecord, ...], now: datetime) -> bool:
        """The agent's latest GPU telemetry; True when it differs from what the hub held."""
        self.telemetry_at = now
        if telemetry == self.telemetry:
            return False
        if processes(telemetry) != processes(self.telemetry):
            self.processes_dirty = True
        self.telemetry = telemetry
        self.telemetry_dirty = True
        return True

    def unwritten_telemetry(self) -> tuple[GpuTelemetryRecord, ...]:
        """Telemetry the database does not have yet (written when the node goes down)."""
        return self.telemetry if self.telemetry_dirty else ()

    def allow_heartbeat(self, mono: float, interval: float, sent: float | None = None) -> bool:
        """False when heartbeats come far faster than agreed (a broken or hostile agent)."""
        at = mono
        if sent is not None:
            if self.sent_offset is None:
                self.sent_offset = self.allowance_at - sent
            at = sent + self.sent_offset
            if not self.allowance_at <= at <= mono:  # the agent's clock stepped, or lies
                at = min(max(at, self.allowance_at), mono)
                self.sent_offset = at - sent
        at = max(at, self.allowance_at)
        refill = (at - self.allowance_at) * RATE / interval
        self.allowance = min(BURST, self.allowance + refill)
        self.allowance_at = at
        if self.allowance < 1:
            return False
        self.allowance -= 1
        return True

    def send(self, message: pb.HubMessage) -> None:
        self.outbox.put_nowait(message)

    def close(self, reason: str, code: grpc.StatusCode | None = None) -> None:
        if self.closed is None:
            self.closed = Close(reason, code)
            self.outbox.put_nowait(self.closed)
        for future in (self.pending or {}).values():
            if not future.done():
                future.set_exception(NodeDisconnected(f"node {self.name}: {reason}"))
        self.pending = self.listeners = None

    def start_task(
        self, request: pb.TaskRequest, on_progress: OnProgress | None = None
    ) -> asyncio.Future[pb.TaskResult]:
        """Send a task; its result arrives on the future (NodeDisconnected if the stream ends
        first), its progress events on `on_progress`."""
        if self.closed is not None:
            raise NodeDisconnected(f"node {self.name}: {self.closed.reason}")
        if self.pending is None:
            self.pending = {}
        future = self.pending.get(request.task_id)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self.pending[request.task_id] = future
            self.send(pb.HubMessage(task=request))
        if on_progress is not None:
            if self.listeners is None:
                self.listeners = {}
            self.listeners[request.task_id] = on_progress
        return future

    async def run_task(self, request: pb.TaskRequest) -> pb.TaskResult:
        return await self.start_task(request)

    def cancel(self, task_id: str) -> None:
        """Ask the agent to cancel a task; its (cancelled) result still comes on the future."""
        if self.closed is None:
            self.send(pb.HubMessage(cancel=pb.TaskCancel(task_id=task_id)))

    def abandon(self, task_id: str) -> None:
        """Stop waiting for a task: a result that comes later is dropped, not an error."""
        future = self.pending.pop(task_id, None) if self.pending else None
        if future is not None and not future.done():
            future.cancel()
        if self.listeners:
            self.listeners.pop(task_id, None)
        if self.abandoned is None:
            self.abandoned = OrderedDict()
        self.abandoned[task_id] = None
        while len(self.abandoned) > ABANDONED_KEPT:
            self.abandoned.popitem(last=False)

    def progress(self, task_id: str, event: TaskProgress, mono: float) -> bool:
        """Route a task's progress to its listener; progress of tasks nobody waits for (any
        more) is dropped, and so is progress past the rate limit (False then): each event is
        stored with its operation."""
        refill = max(0.0, mono - self.progress_at) * PROGRESS_RATE
        self.progress_allowance = min(PROGRESS_BURST, self.progress_allowance + refill)
        self.progress_at = mono
        if self.progress_allowance < 1:
            return False
        self.progress_allowance -= 1
        listener = self.listeners.get(task_id) if self.listeners else None
        if listener is not None:
            listener(event)
        return True

    def resolve(self, result: pb.TaskResult) -> bool:
        """Hand a result to its waiter; False when no task with that id was sent."""
        if self.listeners:
            self.listeners.pop(result.task_id, None)
        future = self.pending.pop(result.task_id, None) if self.pending else None
        if future is None:
            if self.abandoned is None or result.task_id not in self.abandoned:
                return False
            del self.abandoned[result.task_id]
            return True
        if not future.done():
            future.set_result(result)
        return True


def processes(
    telemetry: tuple[GpuTelemetryRecord, ...],
) -> dict[int, tuple[tuple[int, int, int], ...]]:
    """What placement reads of the telemetry: each GPU's processes."""
    return {sample.index: sample.processes for sample in telemetry if sample.processes}


@dataclass(frozen=True)
class Updates:
    seen: dict[str, datetime]
    telemetry: dict[str, tuple[GpuTelemetryRecord, ...]]
    inventories: dict[str, tuple[str, str, tuple[GpuRecord, ...], tuple[str, ...]]]


class SessionRegistry:
    def __init__(self, rng: random.Random | None = None) -> None:
        self._sessions: dict[str, AgentSession] = {}
        self._rng = rng or random.Random()
        # Seconds the hub's own loop was stalled (the watcher's ticks came late), summed: not
        # counted against any session's silence.
        self.stalled = 0.0

    def open(
        self, name: str, agent_id: str, address: str, mono: float, now: datetime
    ) -> AgentSession:
        """Register a new stream for `name`.

        The same agent (same agent_id) reconnecting replaces its stale stream; a different
        agent under a connected name raises NameInUse and the first one keeps working.
        """
        current = self._sessions.get(name)
        if current is not None:
            if current.agent_id != agent_id:
                raise NameInUse(name, current.address)
            current.close("replaced by a new connection of the same agent")
        # Its hello was just written; the first batched writes come at a random phase, so that
        # thousands of agents connecting at once do not all fall due in one batch.
        session = AgentSession(
            name, agent_id, address, last_beat=mono, last_seen=now, credit_at_beat=self.stalled,
            telemetry_written=mono - self._rng.random() * TELEMETRY_WRITE_S,
            seen_written=mono - self._rng.random() * SEEN_WRITE_S,
        )  # fmt: skip
        self._sessions[name] = session
        return session

    def release(self, session: AgentSession) -> bool:
        """Forget a finished stream; True when it was the node's current one (node is down)."""
        if self._sessions.get(session.name) is not session:
            return False
        del self._sessions[session.name]
        return True

    def heartbeat(self, session: AgentSession, mono: float, now: datetime) -> None:
        session.last_beat = mono
        session.last_seen = now
        session.credit_at_beat = self.stalled
        session.paced = None

    def credit(self, seconds: float) -> None:
        """The hub's loop was stalled this long: nobody's silence."""
        self.stalled += seconds

    def silence(self, session: AgentSession, mono: float) -> float:
        """Seconds since its last heartbeat, less the time the hub itself was stalled."""
        return mono - session.last_beat - (self.stalled - session.credit_at_beat)

    def expired(self, mono: float, missed: int = MISSED_HEARTBEATS) -> list[AgentSession]:
        """Sessions silent for more than `missed` of the intervals they were told."""
        stalled = self.stalled  # silence() and liveness_interval inlined: 10,000 a second
        return [
            s for s in self._sessions.values()
            if not s.registering and mono - s.last_beat - (stalled - s.credit_at_beat)
            > missed * (s.interval if s.paced is None else s.paced[1])
        ]  # fmt: skip

    def take_updates(self, mono: float) -> Updates:
        """What is due for one batched write: changed inventories at once, changed telemetry
        at most every TELEMETRY_WRITE_S per node, heartbeat times every SEEN_WRITE_S."""
        seen, telemetry, inventories = {}, {}, {}
        for name, session in self._sessions.items():
            if session.inventory is not None:
                inventories[name], session.inventory = session.inventory, None
            if session.telemetry_dirty and (
                session.processes_dirty or mono - session.telemetry_written >= TELEMETRY_WRITE_S
            ):
                telemetry[name] = session.telemetry
                session.telemetry_dirty, session.processes_dirty = False, False
                session.telemetry_written = mono
            if mono - session.seen_written >= SEEN_WRITE_S:
                seen[name] = session.last_seen
                session.seen_written = mono
        return Updates(seen, telemetry, inventories)

    def get(self, name: str) -> AgentSession | None:
        return self._sessions.get(name)

    def live(self, name: str) -> AgentSession | None:
        """The node's session once it is registered and welcomed: what listings call ready."""
        session = self._sessions.get(name)
        return session if session is not None and not session.registering else None

    def __iter__(self) -> Iterator[AgentSession]:
        return iter(list(self._sessions.values()))

    def __len__(self) -> int:
        return len(self._sessions)
