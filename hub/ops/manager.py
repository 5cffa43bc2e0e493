"""Operations: created on request, run in the background, stored with every event so
`hubctl ops show` works after the fact; watchers get the stored events, then live ones.

What an operation does on a node is its kind's business (hub/ops/kind.py); everything else
is the same for every kind and lives here: reserving nodes, batches, events and progress,
cancellation, the stored outcome. A kind that runs on the hub itself (HubKind) goes the same
way with the one target "hub", holding its reservation key instead of nodes.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from gpufleet.v1 import agent_link_pb2 as pb
from hub.ops.batches import FAILED, Outcome, run_batches
from hub.ops.cancel import Cancel
from hub.ops.events import Event, ProgressLog
from hub.ops.gc_pause import GcPause
from hub.ops.kind import HUB_TARGET, HubKind, HubRun, NodeRun, OperationKind, Request
from hub.ops.remote import RemoteAgent
from hub.ops.reservations import Reservations, Reserved
from hub.ops.running import running_from_proto
from hub.ops.steps import SetState
from hub.ops.writes import Writes
from hub.sessions import AgentSession, SessionRegistry, TaskProgress
from hub.states import UNKNOWN, NodeState, observed
from hub.store import Database
from hub.store.db import cannot_persist, describe, storage_fault
from hub.store.operations import OperationRecord, OperationStore

log = logging.getLogger(__name__)
CANCEL_WAIT_S = 60.0  # how long CancelOperation waits for the operation to end


class OperationError(Exception):
    """Refused before anything changed; `kind` picks the gRPC status."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # not_found, conflict, invalid


@dataclass
class Live:
    record: OperationRecord
    seq: int = 0
    watchers: list[asyncio.Queue[Event]] = field(default_factory=list)
    cancel: Cancel = field(default_factory=Cancel)
    progress: ProgressLog = field(default_factory=ProgressLog)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    kind: OperationKind | None = None
    # A hub kind's reservation key ('' for node kinds).
    holds: str = ""


def new_id(now: datetime) -> str:
    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


class OperationManager:
    def __init__(
        self,
        registry: SessionRegistry,
        db: Database,
        store: OperationStore,
        observe_step: Callable[[str, float], None] = lambda _step, _seconds: None,
        on_finish: Callable[[str, str], None] = lambda _kind, _status: None,
        drained: Iterable[str] = (),
        gc_pause: GcPause | None = None,
    ) -> None:
        # Off while a wide operation sends its first tasks (hub/ops/gc_pause.py).
        self.gc_pause = gc_pause if gc_pause is not None else GcPause()
        self.on_finish = on_finish
        # Nodes an operation left draining (stored, so also across agent reconnects and hub
        # restarts): a health report that their services are fine keeps them draining.
        self.drained: set[str] = set(drained)
        self.registry = registry
        self.db = db
        self.store = store
        # Every write of every operation goes through here: one transaction per loop turn.
        self.writes = Writes(db, store)
        self.observe_step = observe_step
        self.reservations = Reservations()
        self.busy = self.reservations.busy  # node -> operation id, read by the services
        # Ended operations whose final write has not landed yet (the database refuses
        # writes): their outcome, shown instead of the stored `running` until it lands.
        self.unsaved: dict[str, tuple[str, datetime, str]] = {}
        self.running: dict[str, Live] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def submit(self, request: Request, known_nodes: list[str]) -> str:
        if self.db.error:  # it could not record the operation's progress nor its outcome
            raise OperationError("conflict", cannot_persist(self.db.error))
        kind = request.kind
        holds = kind.reservation if isinstance(kind, HubKind) else ""
        nodes = [HUB_TARGET] if holds else self._resolve(request.nodes, known_nodes)
        try:
            if holds:
                self.reservations.check_key(holds)
            else:
                self.reservations.check_nodes(nodes)
        except Reserved as exc:
            raise OperationError("conflict", str(exc)) from None
        now = self.now()
        params: dict[str, object] = {
            "serial": request.serial,
            "max_fail_percent": request.max_fail_percent,
            "nodes": nodes,
        }
        if holds:
            params["holds"] = holds
        record = OperationRecord(
            id=new_id(now), kind=kind.name, created=now, configuration=kind.configuration,
            check=request.check, params=params,
        )  # fmt: skip
        # From here until its first tasks are out a wide operation waits for no collection
        # (at 10,000 agents a full one takes 0.5-1 s) and its writes are held.
        at_once = min(request.serial if request.serial > 0 else len(nodes), len(nodes))
        self.writes.hold(self.gc_pause.started(at_once))
        # Reserve before the first await: two requests racing for a node cannot both pass.
        if not request.check:
            self.reservations.take(record.id, nodes, holds, kind)
        try:
            self.writes.flush()  # in order: what operations wrote before, then this one
            await self.db.call(self.store.create, record, nodes)
        except BaseException as exc:
            self.reservations.release(nodes, record.id)
            self.reservations.let_go(holds, record.id)
            if isinstance(exc, Exception) and storage_fault(exc):
                log.error("cannot record operation %s: %s", record.id, describe(exc))
                raise OperationError("conflict", cannot_persist(describe(exc))) from None
            raise
        self.running[record.id] = Live(record, kind=kind, holds=holds)
        task = asyncio.create_task(self._run(record, request, nodes), name=record.id)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return record.id

    def holder(self, reservation: str) -> tuple[str, OperationKind] | None:
        """The hub operation holding `reservation` now, and its kind (to join it)."""
        return self.reservations.holder(reservation)

    @staticmethod
    def _resolve(names: list[str], known: list[str]) -> list[str]:
        if not names:
            raise OperationError("invalid", "no nodes given: name them with --node, or --all")
        found = set(known)  # a set: 10,000 names against 10,000 known ones, not 10^8 compares
        unknown = [name for name in names if name not in found]
        if unknown:
            raise OperationError(
                "not_found",
                f"unknown node {', '.join(unknown)}: `hubctl nodes` lists the known nodes",
            )
        return list(dict.fromkeys(names))

    async def cancel(self, operation_id: str, who: str) -> None:
        """Stop a running operation and wait (bounded) until it has ended."""
        run = self.running.get(operation_id)
        if run is None:
            self.writes.flush()
            found = await self.db.call(self.store.get, operation_id)
            if found is None:
                raise OperationError(
                    "not_found", f"no operation {operation_id!r}: `hubctl ops` lists them"
                )
            raise OperationError(
                "conflict", f"operation {operation_id} already ended ({found.status})"
            )
        if not run.cancel.is_set():
            run.cancel.set()
            self.event(operation_id, "", "cancel", f"cancelled by {who}")
        try:
            await asyncio.wait_for(run.ended.wait(), CANCEL_WAIT_S)
        except TimeoutError:
            raise OperationError(
                "conflict",
                f"operation {operation_id} is still ending {CANCEL_WAIT_S:.0f} s after the "
                f"cancel: follow it with `hubctl ops watch {operation_id}`",
            ) from None

    def event(self, operation_id: str, node: str, step: str, message: str,
              done: bool = False) -> None:  # fmt: skip
        self._add(operation_id, node, step, message, done=done)

    def _progress(self, operation_id: str, node: str, task_id: str, p: TaskProgress) -> None:
        run = self.running.get(operation_id)
        if run is None:
            return
        event = self._add(operation_id, node, p.phase, p.message, progress=True,
                          percent=p.percent)  # fmt: skip
        gone = run.progress.add(node, task_id, event.seq)
        if gone is not None:
            self.writes.add(self.store.event_deleted, operation_id, gone)

    def _add(self, operation_id: str, node: str, step: str, message: str, done: bool = False,
             progress: bool = False, percent: float | None = None) -> Event:  # fmt: skip
        run = self.running[operation_id]
        run.seq += 1
        event = Event(run.seq, self.now(), node, step, message, done, progress, percent)
        self.writes.add(self.store.event_added, operation_id, event)
        for queue in run.watchers:
            queue.put_nowait(event)
        return event

    async def _run(self, record: OperationRecord, request: Request, nodes: list[str]) -> None:
        oid = record.id
        run = self.running[oid]
        try:
            results = await run_batches(
                nodes, request.serial, request.max_fail_percent,
                lambda node: self._node(oid, node, request),
                on_start=lambda node: self._node_started(oid, node),
                on_result=lambda node, outcome: self._node_finished(oid, node, outcome),
                cancel=run.cancel,
            )  # fmt: skip
            failed = sum(outcome.result in FAILED for outcome in results.values())
            if run.holds:
                status, message = _on_hub(results[HUB_TARGET], run.cancel.is_set())
            elif run.cancel.is_set():
                status = "cancelled"
                message = f"cancelled; {failed} of {len(nodes)} nodes failed"
            else:
                status = "failed" if failed else "succeeded"
                message = f"{failed} of {len(nodes)} nodes failed" if failed else "all nodes done"
        except Exception as exc:  # a bug must still end the operation, not leave it running
            log.exception("operation %s crashed", oid)
            status, message = "failed", f"internal error: {exc}"
        finally:
            if run.holds:
                self.reservations.let_go(run.holds, oid)
            else:
                self.reservations.release(nodes, oid)
        finished = self.now()
        self.unsaved[oid] = (status, finished, message)
        self.writes.add(self.store.finished, oid, status, finished, message,
                        landed=lambda: self.unsaved.pop(oid, None))  # fmt: skip
        self.event(oid, "", "done", f"{status}: {message}", done=True)
        del self.running[oid]
        run.ended.set()
        self.on_finish(record.kind, status)
        log.info("operation %s %s: %s", oid, status, message)

    def truthful(self, record: OperationRecord) -> OperationRecord:
        """The stored record, with the outcome of an operation that ended but whose final
        write the database has not taken yet."""
        outcome = self.unsaved.get(record.id)
        if outcome is None or record.status != "running":
            return record
        status, finished, message = outcome
        return replace(record, status=status, finished=finished, message=message)

    def _node_started(self, operation_id: str, node: str) -> None:
        self.writes.add(self.store.resulted, operation_id, node, "running", "", self.now(), None)
        self.event(operation_id, node, "begin", "started")

    def _node_finished(self, operation_id: str, node: str, outcome: Outcome) -> None:
        dropped = self.running[operation_id].progress.finish_node(node)
        self.writes.add(self.store.resulted, operation_id, node, outcome.result,
                        outcome.message, None, self.now(), dropped)  # fmt: skip
        if self.running[operation_id].holds:
            self.event(operation_id, node, "result", f"{outcome.result}: {outcome.message}")
            return
        self.reservations.release([node], operation_id)
        session = self.registry.get(node)
        if outcome.result == "unreachable" and session is not None:
            self._apply_running(session)  # it came back while the operation ran
        self.event(operation_id, node, "result", f"{outcome.result}: {outcome.message}")

    def _set_state(self, operation_id: str, node: str, check: bool) -> SetState:
        def apply(state: NodeState, configuration: str, message: str) -> None:
            if check:
                return
            self.writes.add(self.store.moved, node, state, configuration,
                            self.now(), message, operation_id)  # fmt: skip
            if state == NodeState.DRAINING:
                self.drained.add(node)
            else:
                self.drained.discard(node)

        return apply

    async def _node(self, operation_id: str, node: str, request: Request) -> Outcome:
        if isinstance(request.kind, HubKind):
            return await self._hub(operation_id, request.kind, request.check)
        session = self.registry.get(node)
        if session is None:
            self.event(operation_id, node, "result", "unreachable: the node is not connected")
            return Outcome("unreachable", "the node is not connected")
        run = self.running[operation_id]
        agent = RemoteAgent(
            session, operation_id, run.cancel,
            on_progress=lambda task, p: self._progress(operation_id, node, task, p),
            observe=self.observe_step,
        )  # fmt: skip
        context = NodeRun(
            node, agent, session.project,
            lambda step, message: self.event(operation_id, node, step, message),
            self._set_state(operation_id, node, request.check), request.check,
        )  # fmt: skip
        return await request.kind.run_node(context)

    async def _hub(self, operation_id: str, kind: HubKind, check: bool) -> Outcome:
        run = self.running[operation_id]

        def progress(phase: str, message: str, percent: float | None) -> None:
            self._progress(
                operation_id, HUB_TARGET, kind.name, TaskProgress(phase, message, percent)
            )

        context = HubRun(
            operation_id, lambda step, message: self.event(operation_id, HUB_TARGET, step, message),
            progress, run.cancel, check,
        )  # fmt: skip
        return await kind.run_hub(context)

    def node_connected(
        self, session: AgentSession, projects: list[pb.RunningProject] | None
    ) -> None:
        """After a (re)connect, what the agent actually runs becomes the node's state,
        unless an operation holds the node and owns its state. None: the agent could not
        tell, and the node must not be taken to run nothing."""
        if projects is None:
            session.project = UNKNOWN
        else:
            session.project = running_from_proto(projects[0]) if projects else None
        if session.name not in self.busy:
            self._apply_running(session)

    def _apply_running(self, session: AgentSession) -> None:
        state, config, message = observed(session.project)
        if session.name in self.drained and state == NodeState.READY:
            state = NodeState.DRAINING  # healthy, and drained: so until a switch or stop
        self.writes.add(self.store.moved, session.name, state, config, self.now(), message,
                        "", True)  # fmt: skip

    async def watch(self, operation_id: str) -> AsyncIterator[Event]:
        """Stored events, then live ones until the operation ends."""
        queue: asyncio.Queue[Event] = asyncio.Queue()
        run = self.running.get(operation_id)
        if run is not None:
            run.watchers.append(queue)
        try:
            last = 0
            self.writes.flush()  # the events gathered so far are stored before they are read
            for stored in await self.db.call(self.store.events, operation_id):
                last = stored.seq
                yield stored
                if stored.done:
                    return
            if run is None:
                return
            while True:
                event = await queue.get()
                if event.seq <= last:
                    continue
                yield event
                if event.done:
                    return
        finally:
            if run is not None and queue in run.watchers:
                run.watchers.remove(queue)

    async def shutdown(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.gc_pause.resume()
        self.writes.flush()  # the cancelled operations' outcomes, before the database closes


def _on_hub(outcome: Outcome, cancelled: bool) -> tuple[str, str]:
    """A hub operation's status and message: its one outcome's."""
    if cancelled or outcome.result == "cancelled":
        return "cancelled", outcome.message or "cancelled"
    if outcome.result in FAILED:
        return "failed", outcome.message
    return "succeeded", outcome.message or "done"
