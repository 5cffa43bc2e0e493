"""The backend switch operation kind ("backend-switch"): `hubctl models switch-backend`.

Per node, two steps, each only where the handler (`hub.models.backend`) found it needed:

1. build: the node has no ready environment of the backend (and version): it is built there
   as `hubctl envs build` builds it (`hub.envs.kind.build_on_node`, the operation's one Gate so
   that the cluster compiles once, the agent's progress as events). A failed build ends the
   node: nothing is restarted.
2. switch: the node runs the model: exactly a model switch of that node
   (`hub.models.ops.ModelSwitchKind`: drain, stop, start the model's process from the other
   environment, wait until /v1/models lists it, roll back to what ran before on failure, the
   deployment record kept).

The association of the model with the environment (`associate`) is written when a node's
switch succeeded, or, in an operation that restarts nothing (`--no-restart`, or nodes that do
not run the model), when a node's build succeeded: a failed build or switch leaves it as it
was. Writing it again is harmless (the same row).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from hub.envs.kind import Gate, build_on_node
from hub.envs.view import EnvBuild, NodeEnvs
from hub.models.ops import ModelSwitchKind
from hub.ops.batches import Outcome
from hub.ops.kind import NodeRun, OperationKind

DONE = ("ok", "changed")


@dataclass(frozen=True)
class BackendSwitchKind(OperationKind):
    name = "backend-switch"
    project: str  # model-NAME, for listings
    spec: EnvBuild  # what to build where it is missing
    envs: NodeEnvs
    builds: frozenset[str]  # the nodes that build the environment first
    switches: Mapping[str, ModelSwitchKind]  # the nodes that restart the model, their switch
    associate: Callable[[], None]  # writes the association (idempotent)
    gate: Gate = field(default_factory=Gate)

    @property
    def configuration(self) -> str:
        return self.project

    async def run_node(self, run: NodeRun) -> Outcome:
        built: Outcome | None = None
        if run.node in self.builds:
            run.report("build", f"building {self.spec.environment} on {run.node}")
            built = await build_on_node(run, self.spec, self.envs, self.gate)
            if built.result not in DONE or run.check:
                return built
        switch = self.switches.get(run.node)
        if switch is None:
            if not self.switches and not run.check:
                self.associate()  # nothing restarts: the build was the switch
            return built or Outcome("ok", f"{self.spec.environment} is ready")
        outcome = await switch.run_node(run)
        if outcome.result in DONE and not run.check:
            self.associate()
        if built is None:
            return outcome
        message = f"built {self.spec.environment}; {outcome.message}".rstrip("; ")
        return Outcome("changed" if outcome.result in DONE else outcome.result, message)
