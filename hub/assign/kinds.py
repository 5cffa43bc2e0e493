"""The assignment operation kinds: send each node its part of a plan (apply), or its part of
the plan in force before (rollback)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from gpufleet.v1 import agent_link_pb2 as pb
from hub.assign.nodes import apply_on_node
from hub.configs import Configuration
from hub.ops.batches import Outcome
from hub.ops.kind import NodeRun, OperationKind


@dataclass(frozen=True)
class AssignApply(OperationKind):
    name = "assign-apply"
    config: Configuration
    tasks: Mapping[str, pb.ApplyAssignment]
    # Each node's override under the assignments in force before, to go back to when a
    # recreated service does not become healthy (a node missing here is left as it is).
    undo: Mapping[str, pb.ApplyAssignment] = field(default_factory=dict)

    @property
    def configuration(self) -> str:
        return self.config.name

    async def run_node(self, run: NodeRun) -> Outcome:
        task = self.tasks[run.node]
        return await apply_on_node(
            run.agent, task, self.config, run.report, self.undo.get(run.node)
        )


@dataclass(frozen=True)
class AssignRollback(AssignApply):
    name = "assign-rollback"
