"""One node's part in an assignment operation: send its override, report what it did."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from gpufleet.v1 import agent_link_pb2 as pb
from hub.assign.convert import report_lines
from hub.ops.batches import Outcome
from hub.ops.steps import StepResult, Unreachable


class AssigningAgent(Protocol):
    async def apply_assignment(
        self, task: pb.ApplyAssignment
    ) -> tuple[StepResult, pb.TaskResult]: ...


async def apply_on_node(
    agent: AssigningAgent, task: pb.ApplyAssignment, report: Callable[[str, str], None]
) -> Outcome:
    here = [s.service for s in task.services if s.here]
    report("override", f"{task.project}: {', '.join(here) or 'no services'} on this node")
    try:
        step, answer = await agent.apply_assignment(task)
    except Unreachable as exc:
        return Outcome("unreachable", str(exc))
    if answer.HasField("assignment"):
        for name, line in report_lines(answer.assignment):
            report(name, line)
    return Outcome(step.status, step.message)
