"""The model operation kinds: switch a node to a model deployment, stop a model.

Built on the configuration switch's procedure (`hub.ops.steps.Switch`: drain, stop, start,
wait until healthy, roll back) and `hub.ops.kinds.StopKind`; what is the models' own is
which configuration a node runs before (a configuration of the directory, or the model
deployment it runs, regenerated) and the record of the deployment each node runs
(`hub.store.deployments`), written once the node's outcome is known.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from hub.configs import Configuration
from hub.models import deploy
from hub.ops import capacity
from hub.ops.batches import Outcome
from hub.ops.kind import NodeRun, OperationKind
from hub.ops.kinds import StopKind, definition
from hub.ops.steps import Switch
from hub.placement.engine import gpu_label
from hub.store.deployments import Deployed

# Writes what a node runs now: its deployment, or (node, None) when it runs no model.
Remember = Callable[[str, Deployed | None], None]


def now() -> datetime:
    return datetime.now(UTC)


def problems(model: str, node: str, gpus: Sequence[capacity.NodeGpu], where: deploy.Placement,
             vram_gb: float | None) -> tuple[list[str], list[str]]:  # fmt: skip
    """(refused, short): GPU indexes the node does not have (refused always), and what its
    GPUs cannot hold of the model, in the assignment warnings' words (refused unless forced)."""
    if not where.gpus:
        return [], []
    have = {g.index for g in gpus}
    missing = [i for i in where.gpus if i not in have]
    if missing:
        listing = ", ".join(map(str, sorted(have))) or "none"
        return [f"{node} has no {gpu_label(missing)} (its GPUs: {listing}): choose --gpus "
                f"from those"], []  # fmt: skip
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
    rollback: bool = True
    warnings: Mapping[str, Sequence[str]] = field(default_factory=dict)
    clock: Callable[[], datetime] = now

    @property
    def configuration(self) -> str:
        return self.target.name

    async def run_node(self, run: NodeRun) -> Outcome:
        for line in self.warnings.get(run.node, ()):
            run.report("warning", line)
        previous = definition(run, self.configurations, self.previous)
        switch = Switch(run.agent, run.running, self.target, previous, run.report,
                        run.set_state, run.check, self.rollback)  # fmt: skip
        outcome = await switch.run()
        if not run.check:
            self._record(run, outcome)
        return outcome

    def _record(self, run: NodeRun, outcome: Outcome) -> None:
        """What the node runs after the switch becomes its stored deployment."""
        project = run.agent.session.project
        runs = project.name if project is not None else ""
        before = self.stored.get(run.node)
        # The same project name with another digest: rolled back to the model's previous
        # deployment (other GPUs or port), which stays recorded.
        if (
            runs == self.target.name
            and project is not None
            and (project.digest == self.target.digest)
        ):
            if (
                before is not None
                and before.digest == self.target.digest
                and outcome.result == "ok"
            ):
                return  # it already ran this, since then
            self.remember(run.node, Deployed(
                run.node, self.model, self.engine, self.target.name, self.where.gpus,
                self.where.port, self.target.digest, self.clock(),
            ))  # fmt: skip
        elif before is None or before.project != runs:
            self.remember(run.node, None)  # rolled back to a configuration, or runs nothing


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
        if not run.check and (project is None or project.name != self.project):
            self.remember(run.node, None)
        return outcome
