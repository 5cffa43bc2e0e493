"""The configuration operation kinds: switch, drain, stop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy import Connection, select

from hub.configs import Configuration
from hub.ops import capacity
from hub.ops.batches import Outcome
from hub.ops.kind import NodeRun, OperationKind
from hub.ops.steps import Cancelled, Switch, Unreachable, cancelled
from hub.states import UNKNOWN, UNKNOWN_RUNNING, NodeState, Running
from hub.store import Database
from hub.store.assignments import Assigned, AssignmentStore
from hub.store.models import Gpu, Node
from hub.store.store import foreign_mb

S = NodeState
log = logging.getLogger(__name__)


class Capacity(Protocol):
    def __call__(self, config: Configuration, node: str) -> Awaitable[list[str]]:
        """One line per thing the node's GPUs cannot hold of `config` (hub/ops/capacity)."""
        ...


class StoredCapacity:
    """Capacity warnings from what the database knows: the node's GPUs as its agent last
    reported them (less the VRAM of processes gpufleet does not manage), and the
    configuration's assignments in force.

    The nodes that ask within one turn of the event loop (every node of a `switch --all`
    asks at once) are answered from one read on a reader thread: their GPUs in one query, the
    assignments once per configuration; not two round trips per node on the writer's thread,
    each queued behind the operation's writes, before the node's first task could go out."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._asked: dict[tuple[str, str], asyncio.Future[list[str]]] = {}
        self._configs: dict[str, Configuration] = {}

    def __call__(self, config: Configuration, node: str) -> asyncio.Future[list[str]]:
        """A future, not a coroutine: a node of a `switch --all` waits on it with no task
        of its own."""
        loop = asyncio.get_running_loop()
        if not self._asked:
            loop.call_soon(self._read)
        self._configs[config.name] = config
        found = self._asked.get((node, config.name))
        if found is None:
            found = self._asked[(node, config.name)] = loop.create_future()
        return found

    def _read(self) -> None:
        asked, self._asked = self._asked, {}
        configs, self._configs = self._configs, {}
        task = asyncio.ensure_future(self._answer(asked, configs))
        _reads.add(task)
        task.add_done_callback(_reads.discard)

    async def _answer(self, asked: dict[tuple[str, str], asyncio.Future[list[str]]],
                      configs: dict[str, Configuration]) -> None:  # fmt: skip
        nodes = list(dict.fromkeys(node for node, _ in asked))
        try:
            # On a reader thread: not queued behind the operation's own writes.
            gpus, current = await self.db.read(self._stored, nodes, list(configs))
        except Exception as exc:
            for future in asked.values():
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException:
            for future in asked.values():
                future.cancel()
            raise
        for (node, name), future in asked.items():
            if not future.done():
                future.set_result(capacity.check(configs[name], node, gpus[node], current[name]))

    def _stored(self, connection: Connection, nodes: list[str], names: list[str]
                ) -> tuple[Gpus, Current]:  # fmt: skip
        """The nodes' GPUs, and each configuration's assignments in force. The GPUs are the
        five columns a capacity check reads, as plain rows: a `switch --all --check` of
        10,000 nodes waits for this read, and ORM rows of every node and GPU took most of it."""
        gpus: Gpus = {node: [] for node in nodes}
        node, gpu = Node.__table__, Gpu.__table__  # type: ignore[attr-defined]
        for at in range(0, len(nodes), READ_AT_ONCE):
            query = (
                select(node.c.name, gpu.c.index, gpu.c.memory_total_mb, gpu.c.state,
                       gpu.c.processes)
                .select_from(node.join(gpu, gpu.c.node_id == node.c.id))
                .where(node.c.name.in_(nodes[at : at + READ_AT_ONCE]))
                .order_by(node.c.name, gpu.c.index)
            )  # fmt: skip
            for name, index, total_mb, state, processes in connection.execute(query):
                gpus[name].append(capacity.NodeGpu(index, total_mb, state == "lost",
                                                   foreign_mb(processes or [])))  # fmt: skip
        assignments = AssignmentStore(self.db.engine)
        current: Current = {}
        for name in names:
            sets = assignments.sets(name)
            current[name] = sets[0].current if sets else ()
        return gpus, current


Gpus = dict[str, list[capacity.NodeGpu]]  # by node
Current = dict[str, tuple[Assigned, ...]]  # the assignments in force, by configuration
READ_AT_ONCE = 2000  # nodes per query (SQLite's limit on bound parameters is far above)
_reads: set[asyncio.Task[None]] = set()  # batched reads in flight (kept from the collector)


@dataclass(frozen=True)
class SwitchKind(OperationKind):
    """Drain and stop what a node runs, start `target`, wait until healthy; roll back."""

    name = "switch"
    target: Configuration
    # Every configuration as loaded when the operation was asked for: what a node runs now
    # is drained and, on failure, brought back from this one consistent snapshot.
    configurations: Mapping[str, Configuration] = field(default_factory=dict)
    rollback: bool = True
    # What the node's GPUs cannot hold, reported as `warning` events (stored with the node's
    # result): informative, in a check and during a real switch, never blocking.
    capacity: Capacity | None = None
    # Per node, the model deployment it runs (hub.models.deploy, regenerated from the current
    # model file): drained, and brought back on failure, like a configuration.
    models: Mapping[str, Configuration] = field(default_factory=dict)

    @property
    def configuration(self) -> str:
        return self.target.name

    async def warn(self, run: NodeRun, lines: Awaitable[list[str]]) -> None:
        try:
            found = await lines
        except Exception:  # a warning that cannot be worked out must not stop the switch
            log.exception("capacity check of %s for %s", run.node, self.target.name)
            return
        for line in found:
            run.report("warning", line)

    async def run_node(self, run: NodeRun) -> Outcome:
        # The capacity read goes alongside the node's first task, not before it (a read of
        # 10,000 nodes' GPUs must not hold back every drain); its warnings are in before the
        # node's result, which they are stored with. StoredCapacity answers with a future:
        # no task per node.
        asked = None if self.capacity is None else asyncio.ensure_future(
            self.capacity(self.target, run.node))  # fmt: skip
        try:
            previous = definition(run, self.configurations, self.models)
            switch = Switch(run.agent, run.running, self.target, previous, run.report,
                            run.set_state, run.check, self.rollback)  # fmt: skip
            outcome = await switch.run()
        except BaseException:
            if asked is not None:
                asked.add_done_callback(_unheard)
            raise
        if asked is not None:
            await self.warn(run, asked)
        return outcome


def _unheard(answer: asyncio.Future[list[str]]) -> None:
    """An answer nobody waits for any more (its node's switch ended first): retrieved, so
    asyncio does not log it as never retrieved."""
    if not answer.cancelled():
        answer.exception()


def definition(run: NodeRun, configurations: Mapping[str, Configuration],
               models: Mapping[str, Configuration]) -> Configuration | None:  # fmt: skip
    """The definition of what the node runs: its model deployment, or a configuration."""
    if run.running is None:
        return None
    mine = models.get(run.node)
    if mine is not None and mine.name == run.running.name:
        return mine
    return configurations.get(run.running.name)


def _settled(run: NodeRun, verb: str) -> Outcome | Running:
    """What runs, or the outcome when there is nothing to do (or only to say what would be)."""
    running = run.running
    if running is UNKNOWN:
        return Outcome("failed", UNKNOWN_RUNNING)
    if running is None:
        run.set_state(S.STOPPED, "", "")
        return Outcome("ok", "runs nothing")
    if run.check:
        return Outcome("changed", f"would {verb} {running.name}")
    return running


@dataclass(frozen=True)
class DrainKind(OperationKind):
    """Wait until what a node runs has no request in flight; the node stays `draining`."""

    name = "drain"
    configurations: Mapping[str, Configuration] = field(default_factory=dict)
    models: Mapping[str, Configuration] = field(default_factory=dict)  # as SwitchKind's

    async def run_node(self, run: NodeRun) -> Outcome:
        running = _settled(run, "drain")
        if isinstance(running, Outcome):
            return running
        run.set_state(S.DRAINING, running.name, "")
        found = definition(run, self.configurations, self.models)
        if found is None:
            return Outcome("ok", f"no definition of {running.name}: nothing to drain")
        try:
            drained = await run.agent.drain(found)
        except Unreachable as exc:
            return Outcome("unreachable", str(exc))
        except Cancelled as exc:
            return cancelled(exc, run.set_state, run.check)
        run.report("drain", drained.message)
        return Outcome("changed", drained.message)


@dataclass(frozen=True)
class StopKind(OperationKind):
    """Stop what a node runs (no drain)."""

    name = "stop"

    async def run_node(self, run: NodeRun) -> Outcome:
        running = _settled(run, "stop")
        if isinstance(running, Outcome):
            return running
        run.set_state(S.SWITCHING, running.name, "stopping")
        try:
            stopped = await run.agent.stop(running.name)
        except Unreachable as exc:
            return Outcome("unreachable", str(exc))
        except Cancelled as exc:
            return cancelled(exc, run.set_state, run.check)
        run.report("stop", stopped.message)
        if stopped.failed:
            run.set_state(S.FAILED, running.name, stopped.message)
            return Outcome("failed", stopped.message)
        run.set_state(S.STOPPED, "", "")
        return Outcome("changed", f"stopped {running.name}")
