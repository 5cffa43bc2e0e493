"""start_project: write the configuration the hub sent and compose up -d.

Ok (nothing restarted) when the same digest already runs with every service up. A project with
GPU assignments has its assigned GPUs checked against the probe first: a GPU lost or missing
since the assignment was applied is replaced by another GPU of this node (agent/overrides.py,
as applying does), and the result then carries an AssignmentReport (the fallbacks and the
project) instead of the bare project.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent import overrides
from agent.convert import report_to_proto, running_to_proto
from agent.preflight import blocking
from agent.projects import Project, ProjectError, check_name
from agent.tasks.base import TaskKind
from agent.tasks.context import Running, TaskContext
from agent.tasks.outcome import Outcome, Report, Status, counted
from gpufleet.v1 import agent_link_pb2 as pb


@dataclass(frozen=True)
class StartSpec:
    project: str
    compose: str  # exactly as the hub has it; checked against the digest before use
    digest: str


def started(status: Status, message: str, project: Running,
            found: overrides.Recheck) -> Outcome[Report]:  # fmt: skip
    """A start's outcome, saying which GPUs fell back."""
    if found.rewritten and not found.fallbacks:
        message += "; GPU override rendered again: the assigned GPUs are usable again"
    if found.fallbacks:
        message += "; " + overrides.describe(found.fallbacks)
    return Outcome(status, message, Report(project, found.fallbacks))


async def recheck(ctx: TaskContext, project: Project, write: bool) -> overrides.Recheck:
    """The project's assigned GPUs against what the probe sees now."""
    if overrides.read_state(project.directory) is None:
        return overrides.Recheck()
    ctx.progress("gpu check", f"checking the GPUs assigned to {project.name}")
    usable = await overrides.usable_gpus(ctx.probe)
    found = overrides.recheck(project.directory, ctx.store.runtime, usable, write)
    ctx.progress("gpu check", overrides.describe(found.fallbacks) or "the assigned GPUs are usable")
    return found


class StartProject(TaskKind[StartSpec, Report]):
    kind = "start_project"

    def parse(self, request: pb.TaskRequest) -> StartSpec:
        task = request.start_project
        return StartSpec(check_name(task.project), task.compose, task.digest)

    async def run(self, ctx: TaskContext, spec: StartSpec, check: bool) -> Outcome[Report]:
        name = spec.project
        before = await ctx.running(name)
        if (
            before.containers
            and before.digest == spec.digest
            and all(c.state == "running" for c in before.containers)
        ):
            return Outcome(Status.OK, f"{name} already runs, nothing restarted", Report(before))
        if problems := blocking(await ctx.preflight.problems()):
            # Fail now with the fix, not after a podman traceback.
            return Outcome(Status.FAILED, f"cannot start {name}: " + "; ".join(problems),
                           Report(before))  # fmt: skip
        if check:
            found = await recheck(ctx, ctx.store.project(name), write=False)
            return started(Status.CHANGED, f"would start {name}", before, found)
        try:
            project = ctx.store.write(name, spec.compose, spec.digest)
        except ProjectError as exc:
            return Outcome(Status.FAILED, str(exc))
        async with ctx.compose_lock:
            found = await recheck(ctx, project, write=True)
            ctx.progress("compose up", f"starting {name}")
            done = await ctx.podman.up(name, project.compose_file)
            if done.code == 0:
                project.record(spec.digest)  # only now does this digest run here
            ctx.progress("compose up", f"compose up ended with exit status {done.code}")
            left: list[str] = []
            if done.code != 0:
                ctx.preflight.stale()  # the host may have changed under us: check again
            if done.code != 0 and not before.containers:
                # Only what this start made: containers that ran before it stay as they are.
                ctx.progress("compose down", f"removing what the failed start of {name} left")
                left = await ctx.podman.clean(name, project.compose_file)
        ctx.watcher.touched(name)
        after = await ctx.running(name)
        if done.code != 0:
            message = f"compose up failed: {done.tail()}"
            if left:
                message += "; could not remove " + ", ".join(left)
            return started(Status.FAILED, message, after, found)
        message = f"started {name}: {counted(len(after.containers), 'container')}"
        return started(Status.CHANGED, message, after, found)

    def fill(self, result: pb.TaskResult, data: Report) -> None:
        if data.fallbacks:
            result.assignment.CopyFrom(report_to_proto(data))
        elif data.project is not None:
            result.project.CopyFrom(running_to_proto(data.project))

    async def cancelled(self, ctx: TaskContext, spec: StartSpec) -> Report:
        return Report(await ctx.running(spec.project))
