"""The configuration operation kinds: switch, drain, stop."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from hub.configs import Configuration
from hub.ops import capacity
from hub.ops.batches import Outcome
from hub.ops.kind import NodeRun, OperationKind
from hub.ops.steps import Cancelled, Switch, Unreachable, cancelled
from hub.states import UNKNOWN, UNKNOWN_RUNNING, NodeState, Running
from hub.store import Database, Store
from hub.store.assignments import AssignmentStore

S = NodeState
log = logging.getLogger(__name__)


class Capacity(Protocol):
    async def __call__(self, config: Configuration, node: str) -> list[str]:
        """One line per thing the node's GPUs cannot hold of `config` (hub/ops/capacity)."""
        ...


@dataclass(frozen=True)
class StoredCapacity:
    """Capacity warnings from what the database knows: the node's GPUs as its agent last
    reported them (less the VRAM of processes gpufleet does not manage), and the
    configuration's assignments in force."""

    db: Database

    async def __call__(self, config: Configuration, node: str) -> list[str]:
        gpus = await self.db.call(Store(self.db.engine).placement_gpus, [node])
        sets = await self.db.call(AssignmentStore(self.db.engine).sets, config.name)
        current = sets[0].current if sets else ()
        found = [capacity.node_gpu(g) for g in gpus]
        return capacity.check(config, node, found, current)


@dataclass(frozen=True)
class SwitchKind(OperationKind):
    """Drain and stop what a node runs, start `target`, wait until healthy; roll back."""

    name = "switch"
    target: Configuration
    # Every configuration as loaded when the operation was asked for: what a node runs now
    # is drained and, on failure, brought back from this one consistent snapshot.
    configurations: Mapping[str, Configuration] = field(default_factory=dict)
    rollback: bool = True
    # What the node's GPUs cannot hold, reported first as `warning` events (stored with the
    # node's result): informative, in a check and before a real switch, never blocking.
    capacity: Capacity | None = None
    # Per node, the model deployment it runs (hub.models.deploy, regenerated from the current
    # model file): drained, and brought back on failure, like a configuration.
    models: Mapping[str, Configuration] = field(default_factory=dict)

    @property
    def configuration(self) -> str:
        return self.target.name

    async def warn(self, run: NodeRun) -> None:
        if self.capacity is None:
            return
        try:
            lines = await self.capacity(self.target, run.node)
        except Exception:  # a warning that cannot be worked out must not stop the switch
            log.exception("capacity check of %s for %s", run.node, self.target.name)
            return
        for line in lines:
            run.report("warning", line)

    async def run_node(self, run: NodeRun) -> Outcome:
        await self.warn(run)
        previous = definition(run, self.configurations, self.models)
        switch = Switch(run.agent, run.running, self.target, previous, run.report,
                        run.set_state, run.check, self.rollback)  # fmt: skip
        return await switch.run()


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
