"""The model operation kinds: switch a node to a model deployment, stop a model.

Built on the configuration switch's procedure (`hub.ops.steps.Switch`: drain, stop, start,
wait until healthy, roll back) and `hub.ops.kinds.StopKind`; what is the models' own is
which configuration a node runs before (a configuration of the directory, or the model
deployment it runs, regenerated), that a node which runs something else than the plan saw is
refused, and the record of the deployment each node runs (`hub.store.deployments`), written
when a start succeeded and settled once the node's outcome is known (`hub.models.record`).
A model served from the registry whose entry a node's cache lacks is fetched there first, as
the switch's visible fetch phase (`hub.registry.kinds.FetchPhase`, the agent's progress), while
what the node runs keeps serving; a failed fetch leaves the node as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from hub.configs import Configuration
from hub.models import deploy
from hub.models.record import Ledger, Remember, unknown
from hub.ops import capacity
from hub.ops.batches import Outcome
from hub.ops.kind import NodeRun, OperationKind
from hub.ops.kinds import StopKind, definition
from hub.ops.steps import Switch
from hub.placement.engine import gpu_label
from hub.registry.kinds import FetchPhase
from hub.states import Running
from hub.store.deployments import Deployed


def now() -> datetime:
    return datetime.now(UTC)


def problems(model: str, node: str, gpus: Sequence[capacity.NodeGpu], where: deploy.Placement,
             vram_gb: float | None, named: bool = True,
             count: int = 0) -> tuple[list[str], list[str]]:  # fmt: skip
    """(refused, short): GPU indexes named with --gpus (`named`) that the node does not have
    (refused always), and what its GPUs cannot hold of the model: too few (none reported, or
    fewer than --gpu-count `count`) or too small, in the assignment warnings' words (refused
    unless forced). The GPUs' usable size leaves out what other processes hold."""
    if not where.gpus:
        return [], []
    have = {g.index for g in gpus}
    missing = [i for i in where.gpus if i not in have]
    if missing and named:
        listing = ", ".join(map(str, sorted(have))) or "none"
        return [f"{node} has no {gpu_label(missing)} (its GPUs: {listing}): choose --gpus "
                f"from those"], []  # fmt: skip
    if missing:
        wanted = len(where.gpus)
        need = f"{model} needs {wanted} GPU{'s' if wanted > 1 else ''}"
        if count:
            need += f" (--gpu-count {count})"
        if not gpus:
            return [], [f"{need}; {node} reported no GPUs"]
        listing = ", ".join(f"GPU {g.index}" for g in sorted(gpus, key=lambda g: g.index))
        lower = ": lower --gpu-count" if count and len(gpus) < wanted else ""
        return [], [f"{need}; {node} has {len(gpus)} ({listing}){lower}"]
    if vram_gb is None:
        return [], []
    demand = capacity.Demand(model, vram_gb, len(where.gpus), where.gpus)
    return [], capacity.warnings(node, gpus, [demand])


@dataclass(frozen=True)
class ModelSwitchKind(OperationKind):
    """Drain and stop what a node runs, start the model's deployment, wait until it serves
    the model; roll back to what ran before on failure."""

    name = "model-switch"
    target: Configuration
    model: str
    engine: str
    where: deploy.Placement
    remember: Remember
    # What each node runs now and could come back: configurations of the directory, and per
    # node the model deployment it runs (regenerated from the current model file).
    configurations: Mapping[str, Configuration] = field(default_factory=dict)
    previous: Mapping[str, Configuration] = field(default_factory=dict)
    stored: Mapping[str, Deployed] = field(default_factory=dict)
    # Per node, (project, digest) it ran when the plan was made ("" for nothing, or a digest
    # not known): a node that runs something else by the time it is reserved is refused.
    planned: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    rollback: bool = True
    warnings: Mapping[str, Sequence[str]] = field(default_factory=dict)
    clock: Callable[[], datetime] = now
    # A model from the registry: its entry into the node's cache first, where it lacks it.
    fetch: FetchPhase | None = None

    @property
    def configuration(self) -> str:
        return self.target.name

    async def run_node(self, run: NodeRun) -> Outcome:
        for line in self.warnings.get(run.node, ()):
            run.report("warning", line)
        before = self.stored.get(run.node)
        moved = moved_since(run.running, self.planned.get(run.node))
        if moved:
            run.report("result", moved)
            return Outcome("failed", moved)
        if self.fetch is not None:
            stopped = await self.fetch.run(run)
            if stopped is not None:
                run.report("result", stopped.message)
                return stopped
        previous = definition(run, self.configurations, self.previous)
        ledger = Ledger(run.node, self.model, self.engine, self.target, self.where, before,
                        self.remember, self.clock)  # fmt: skip
        switch = Switch(run.agent, run.running, self.target, previous, run.report,
                        run.set_state, run.check, self.rollback,
                        on_started=None if run.check else ledger.started)  # fmt: skip
        outcome = await switch.run()
        if not run.check:
            ledger.settle(outcome, run.agent.session.project)
        return outcome


def moved_since(running: Running | None, planned: tuple[str, str] | None) -> str:
    """Why a node must not be switched from what the plan saw ("" when it may): it runs
    something else now, or the same project started again with other settings (the previous
    deployment the plan regenerated, drained and rolled back to, would be the wrong one)."""
    if planned is None or unknown(running):  # no snapshot; or the switch says it cannot tell
        return ""
    name, digest = planned
    now = running.name if running is not None else ""
    if now != name:
        return (f"ran {name or 'nothing'} when the switch was planned, runs {now or 'nothing'} "
                "now (another operation changed it): switch again")  # fmt: skip
    if running is not None and digest and running.digest != digest:
        return (f"{now} was started again with other settings since the switch was planned: "
                "switch again")  # fmt: skip
    return ""


@dataclass(frozen=True)
class ModelStopKind(OperationKind):
    """Stop the model's deployment on a node (no drain), and forget it."""

    name = "model-stop"
    project: str
    remember: Remember

    @property
    def configuration(self) -> str:
        return self.project

    async def run_node(self, run: NodeRun) -> Outcome:
        if run.running is not None and run.running.name not in ("", self.project):
            # It ran the model when the stop was asked; something else runs now: leave it.
            return Outcome("failed", f"runs {run.running.name}, not {self.project}: left as it is")
        outcome = await StopKind().run_node(run)
        project = run.agent.session.project
        if run.check or unknown(project) or outcome.result == "unreachable":
            return outcome  # the record stays as it is
        if project is None or project.name != self.project:
            self.remember(run.node, None)
        return outcome
