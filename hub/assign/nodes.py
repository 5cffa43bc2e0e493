"""One node's part in an assignment operation: send its override, wait until the services it
recreated are healthy, report what it did; if one is not, put its previous override back."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Protocol

from gpufleet.v1 import agent_link_pb2 as pb
from hub.assign.convert import report_lines
from hub.configs import Configuration
from hub.ops.batches import Outcome
from hub.ops.steps import Cancelled, StepResult, Unreachable

Report = Callable[[str, str], None]


class AssigningAgent(Protocol):
    async def apply_assignment(
        self, task: pb.ApplyAssignment
    ) -> tuple[StepResult, pb.TaskResult]: ...

    async def wait_healthy(
        self, config: Configuration, services: Collection[str] | None = None
    ) -> StepResult: ...


async def _apply(
    agent: AssigningAgent, task: pb.ApplyAssignment, config: Configuration, report: Report
) -> tuple[StepResult, str | None]:
    """Apply, then wait for the recreated services: (the apply's step, why it is unhealthy)."""
    step, answer = await agent.apply_assignment(task)
    recreated: list[str] = []
    if answer.HasField("assignment"):
        for name, line in report_lines(answer.assignment):
            report(name, line)
        recreated = list(answer.assignment.recreated)
    if step.failed or not recreated:
        return step, None
    health = await agent.wait_healthy(config, recreated)
    report("ready", health.message)
    return step, (health.message if health.failed else None)


async def apply_on_node(
    agent: AssigningAgent,
    task: pb.ApplyAssignment,
    config: Configuration,
    report: Report,
    undo: pb.ApplyAssignment | None = None,
) -> Outcome:
    """`undo`: the node's override under the assignments in force before, to go back to when
    a recreated service does not become healthy (None: leave the node as it is)."""
    here = [s.service for s in task.services if s.here]
    report("override", f"{task.project}: {', '.join(here) or 'no services'} on this node")
    try:
        step, unhealthy = await _apply(agent, task, config, report)
        if unhealthy is None:
            return Outcome(step.status, step.message)
        failure = f"{step.message}; not healthy: {unhealthy}"
        if undo is None:
            return Outcome("failed", failure)
        report("rollback", "bringing back the previous GPU override")
        back, again = await _apply(agent, undo, config, report)
    except Unreachable as exc:
        return Outcome("unreachable", str(exc))
    except Cancelled as exc:  # assignments move no switch state: the node keeps its own
        return Outcome("cancelled", str(exc))
    if back.failed:
        return Outcome("failed", f"{failure}; rollback failed too: {back.message}")
    if again is not None:
        return Outcome("failed", f"{failure}; rolled back, but not healthy either: {again}")
    return Outcome("failed", f"{failure}; previous GPU override back ({back.message})")
