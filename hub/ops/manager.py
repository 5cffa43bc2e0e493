"""Operations: created on request, run in the background, stored with every event so
`hubctl ops show` works after the fact; watchers get the stored events, then live ones."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gpufleet.v1 import agent_link_pb2 as pb
from hub.configs import Configuration
from hub.ops.batches import FAILED, Outcome, run_batches
from hub.ops.remote import RemoteAgent, running_from_proto
from hub.ops.steps import UNKNOWN, UNKNOWN_RUNNING, Switch
from hub.sessions import AgentSession, SessionRegistry
from hub.store import Database
from hub.store.models import Operation, OperationEvent
from hub.store.operations import OperationStore

log = logging.getLogger(__name__)


class OperationError(Exception):
    """Refused before anything changed; `kind` picks the gRPC status."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # not_found, conflict, invalid


@dataclass(frozen=True)
class Event:
    seq: int
    at: datetime
    node: str
    step: str
    message: str
    done: bool = False


@dataclass(frozen=True)
class Request:
    kind: str  # switch, drain, stop
    nodes: list[str]
    configuration: Configuration | None = None
    serial: int = 0
    max_fail_percent: float = 0.0
    check: bool = False
    rollback: bool = True
    # Every configuration as loaded when the operation was asked for: what a node runs now
    # is drained and, on failure, brought back from this one consistent snapshot.
    configurations: Mapping[str, Configuration] = field(default_factory=dict)
    run_node: NodeRun | None = None


@dataclass
class Running:
    operation: Operation
    seq: int = 0
    watchers: list[asyncio.Queue[Event]] = field(default_factory=list)


def new_id(now: datetime) -> str:
    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


StepFn = Callable[[str], Coroutine[Any, Any, Outcome]]
# A kind of operation defined elsewhere (GPU assignments): what it does on one node, given the
# node's agent, its name and a report(step, message) callback for progress events.
NodeRun = Callable[[RemoteAgent, str, Callable[[str, str], None]], Coroutine[Any, Any, Outcome]]


class OperationManager:
    def __init__(
        self,
        registry: SessionRegistry,
        db: Database,
        store: OperationStore,
        observe_step: Callable[[str, float], None] = lambda _step, _seconds: None,
        on_finish: Callable[[str, str], None] = lambda _kind, _status: None,
    ) -> None:
        self.on_finish = on_finish
        self.registry = registry
        self.db = db
        self.store = store
        self.observe_step = observe_step
        self.busy: dict[str, str] = {}  # node -> operation id
        self.running: dict[str, Running] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def submit(self, request: Request, known_nodes: list[str]) -> str:
        nodes = self._resolve(request.nodes, known_nodes)
        for node in nodes:
            holder = self.busy.get(node)
            if holder is not None:
                raise OperationError(
                    "conflict",
                    f"node {node} is already in operation {holder}: wait for it "
                    f"(hubctl ops watch {holder}) and try again",
                )
        now = self.now()
        config = request.configuration
        operation = Operation(
            id=new_id(now), kind=request.kind, configuration=config.name if config else "",
            status="running", check=request.check, created=now,
            params={"serial": request.serial, "max_fail_percent": request.max_fail_percent,
                    "rollback": request.rollback, "nodes": nodes},
        )  # fmt: skip
        # Reserve before the first await: two requests racing for a node cannot both pass.
        if not request.check:
            self.busy.update(dict.fromkeys(nodes, operation.id))
        try:
            await self.db.call(self.store.create, operation, nodes)
        except BaseException:
            self._release(nodes, operation.id)
            raise
        self.running[operation.id] = Running(operation)
        task = asyncio.create_task(self._run(operation, request, nodes), name=operation.id)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return operation.id

    @staticmethod
    def _resolve(names: list[str], known: list[str]) -> list[str]:
        if not names:
            raise OperationError("invalid", "no nodes given: name them with --node, or --all")
        unknown = [name for name in names if name not in known]
        if unknown:
            raise OperationError(
                "not_found",
                f"unknown node {', '.join(unknown)}: `hubctl nodes` lists the known nodes",
            )
        return list(dict.fromkeys(names))

    def event(self, operation_id: str, node: str, step: str, message: str,
              done: bool = False) -> None:  # fmt: skip
        run = self.running[operation_id]
        run.seq += 1
        event = Event(run.seq, self.now(), node, step, message, done)
        self.db.submit(self.store.add_event, OperationEvent(
            operation_id=operation_id, seq=event.seq, at=event.at, node=node, step=step,
            message=message,
        ))  # fmt: skip
        for queue in run.watchers:
            queue.put_nowait(event)

    async def _run(self, operation: Operation, request: Request, nodes: list[str]) -> None:
        oid = operation.id
        try:
            step = self._step_for(operation, request)
            results = await run_batches(
                nodes, request.serial, request.max_fail_percent, step,
                on_start=lambda node: self._node_started(oid, node),
                on_result=lambda node, outcome: self._node_finished(oid, node, outcome),
            )  # fmt: skip
            failed = sum(outcome.result in FAILED for outcome in results.values())
            status = "failed" if failed else "succeeded"
            message = f"{failed} of {len(nodes)} nodes failed" if failed else "all nodes done"
        except Exception as exc:  # a bug must still end the operation, not leave it running
            log.exception("operation %s crashed", oid)
            status, message = "failed", f"internal error: {exc}"
        finally:
            self._release(nodes, oid)
        self.db.submit(self.store.finish, oid, status, self.now(), message)
        self.event(oid, "", "done", f"{status}: {message}", done=True)
        del self.running[oid]
        self.on_finish(operation.kind, status)
        log.info("operation %s %s: %s", oid, status, message)

    def _release(self, nodes: list[str], operation_id: str) -> None:
        for node in nodes:
            if self.busy.get(node) == operation_id:
                del self.busy[node]

    def _node_started(self, operation_id: str, node: str) -> None:
        self.db.submit(self.store.node_result, operation_id, node, "running", "", self.now(), None)
        self.event(operation_id, node, "begin", "started")

    def _node_finished(self, operation_id: str, node: str, outcome: Outcome) -> None:
        self.db.submit(self.store.node_result, operation_id, node, outcome.result,
                       outcome.message, None, self.now())  # fmt: skip
        self._release([node], operation_id)
        session = self.registry.get(node)
        if outcome.result == "unreachable" and session is not None:
            self._apply_running(session)  # it came back while the operation ran
        self.event(operation_id, node, "result", f"{outcome.result}: {outcome.message}")

    def _step_for(self, operation: Operation, request: Request) -> StepFn:
        oid = operation.id
        configs = request.configurations

        def set_state(node: str) -> Callable[[str, str, str], None]:
            def apply(state: str, configuration: str, message: str) -> None:
                if not request.check:
                    self.db.submit(self.store.set_state, node, state, configuration,
                                   self.now(), message, oid)  # fmt: skip

            return apply

        async def step(node: str) -> Outcome:
            session = self.registry.get(node)
            if session is None:
                self.event(oid, node, "result", "unreachable: the node is not connected")
                return Outcome("unreachable", "the node is not connected")

            def report(step_name: str, message: str) -> None:
                self.event(oid, node, step_name, message)

            if request.run_node is not None:
                return await request.run_node(RemoteAgent(session, oid), node, report)
            agent = TimedAgent(RemoteAgent(session, oid), self.observe_step)
            running = session.project
            previous = configs.get(running.name) if running else None

            if request.kind == "switch":
                assert request.configuration is not None
                switch = Switch(agent, running, request.configuration, previous, report,
                                set_state(node), request.check, request.rollback)  # fmt: skip
                return await switch.run()
            return await self._drain_or_stop(request, node, agent, running, previous, report,
                                             set_state(node))  # fmt: skip

        return step

    async def _drain_or_stop(self, request: Request, node: str, agent: TimedAgent,
                             running: Any, previous: Configuration | None,
                             report: Callable[[str, str], None],
                             set_state: Callable[[str, str, str], None]) -> Outcome:  # fmt: skip
        from hub.ops.steps import Unreachable

        if running is UNKNOWN:
            return Outcome("failed", UNKNOWN_RUNNING)
        if running is None:
            set_state("stopped", "", "")
            return Outcome("ok", "runs nothing")
        if request.check:
            return Outcome("changed", f"would {request.kind} {running.name}")
        try:
            if request.kind == "drain":
                set_state("draining", running.name, "")
                if previous is None:
                    return Outcome("ok", f"no definition of {running.name}: nothing to drain")
                drained = await agent.drain(previous)
                report("drain", drained.message)
                return Outcome("changed", drained.message)
            set_state("switching", running.name, "stopping")
            stopped = await agent.stop(running.name)
            report("stop", stopped.message)
            if stopped.failed:
                set_state("failed", running.name, stopped.message)
                return Outcome("failed", stopped.message)
            set_state("stopped", "", "")
            return Outcome("changed", f"stopped {running.name}")
        except Unreachable as exc:
            return Outcome("unreachable", str(exc))

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
        project = session.project
        if project is UNKNOWN:
            state, config, message = "failed", "", "the agent cannot tell what it runs"
        elif project is None:
            state, config, message = "stopped", "", ""
        elif project.all_up:
            state, config, message = "ready", project.name, ""
        else:
            state, config, message = "failed", project.name, "not every container is running"
        self.db.submit(self.store.set_state, session.name, state, config, self.now(), message)

    async def watch(self, operation_id: str) -> AsyncIterator[Event]:
        """Stored events, then live ones until the operation ends."""
        queue: asyncio.Queue[Event] = asyncio.Queue()
        run = self.running.get(operation_id)
        if run is not None:
            run.watchers.append(queue)
        try:
            last = 0
            for stored in await self.db.call(self.store.events, operation_id):
                last = stored.seq
                yield Event(stored.seq, stored.at, stored.node, stored.step, stored.message,
                            stored.step == "done")  # fmt: skip
                if stored.step == "done":
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


class TimedAgent:
    """A NodeAgent that reports each step's duration (for the switch histogram)."""

    def __init__(self, inner: RemoteAgent, observe: Callable[[str, float], None]) -> None:
        self.inner = inner
        self.observe = observe

    async def _timed(self, step: str, call: Coroutine[Any, Any, Any]) -> Any:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            return await call
        finally:
            self.observe(step, loop.time() - started)

    async def drain(self, config: Configuration) -> Any:
        return await self._timed("drain", self.inner.drain(config))

    async def stop(self, project: str) -> Any:
        return await self._timed("stop", self.inner.stop(project))

    async def start(self, config: Configuration) -> Any:
        return await self._timed("start", self.inner.start(config))

    async def wait_healthy(self, config: Configuration) -> Any:
        return await self._timed("ready", self.inner.wait_healthy(config))
