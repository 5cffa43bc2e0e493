"""start_project: write the configuration the hub sent and compose up -d; or, for a host
process project (StartProject.process), write its spec and start its supervisor
(agent/processes.py) with the llama-cpp-python environment of its backend.

Ok (nothing restarted) when the same digest already runs with every service up. A project with
GPU assignments has its assigned GPUs checked against the probe first: a GPU lost or missing
since the assignment was applied is replaced by another GPU of this node (agent/overrides.py,
as applying does), and the result then carries an AssignmentReport (the fallbacks and the
project) instead of the bare project.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent import overrides
from agent.convert import process_from_proto, report_to_proto, running_to_proto
from agent.envs.store import EnvError
from agent.preflight import blocking
from agent.processes import ProcessError
from agent.projects import Project, ProjectError, check_name
from agent.tasks.base import TaskKind
from agent.tasks.context import Running, TaskContext
from agent.tasks.outcome import Outcome, Report, Status, counted
from gpufleet.process import ProcessSpec
from gpufleet.v1 import agent_link_pb2 as pb


@dataclass(frozen=True)
class StartSpec:
    project: str
    compose: str  # exactly as the hub has it; checked against the digest before use
    digest: str
    process: ProcessSpec | None = None  # set: a host process project, no compose file


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


async def start_process(ctx: TaskContext, name: str, found: ProcessSpec, before: Running,
                        check: bool) -> Outcome[Report]:  # fmt: skip
    """Start a host process project; what ran under its name with another spec stops first."""
    backend = found.environment  # a backend, or an environment's name (vulkan-0.3.36)
    try:
        directory = ctx.llama_env(backend)
    except EnvError as exc:
        return Outcome(Status.FAILED, str(exc), Report(before))
    if before.containers and not ctx.processes.is_process(name):
        return Outcome(Status.FAILED, f"cannot start {name} as a host process: its containers "
                       "run; stop it first", Report(before))  # fmt: skip
    if check:
        verb = "restart" if before.containers else "start"
        return Outcome(Status.CHANGED, f"would {verb} {name}", Report(before))
    try:
        if before.containers:
            ctx.progress("stop", f"stopping {name} ({before.containers[0].container_id})")
            await ctx.processes.stop(name)
        ctx.progress("start", f"starting {name} from the {backend} environment {directory}")
        await ctx.processes.start(name, found, directory / "bin" / "python", ctx.env)
    except ProcessError as exc:
        return Outcome(Status.FAILED, str(exc), Report(await ctx.running(name)))
    finally:
        ctx.watcher.touched(name)
    after = await ctx.running(name)
    return Outcome(Status.CHANGED, f"started {name} ({after.containers[0].container_id})",
                   Report(after))  # fmt: skip


class StartProject(TaskKind[StartSpec, Report]):
    kind = "start_project"

    def parse(self, request: pb.TaskRequest) -> StartSpec:
        task = request.start_project
        name = check_name(task.project)
        if not task.HasField("process"):
            return StartSpec(name, task.compose, task.digest)
        found = process_from_proto(task.process)
        if found.digest() != task.digest:
            raise ProjectError(f"project {name}: the process spec does not match its digest")
        return StartSpec(name, "", task.digest, found)

    async def run(self, ctx: TaskContext, spec: StartSpec, check: bool) -> Outcome[Report]:
        name = spec.project
        if spec.process is not None and not ctx.store.project(name).compose_file.is_file():
            before = Running(name, *ctx.processes.listing(name))  # no podman needed
        else:
            before = await ctx.running(name)
        if (
            before.containers
            and before.digest == spec.digest
            and all(c.state == "running" for c in before.containers)
        ):
            return Outcome(Status.OK, f"{name} already runs, nothing restarted", Report(before))
        if spec.process is not None:
            return await start_process(ctx, name, spec.process, before, check)
        if ctx.processes.is_process(name):
            if any(c.state == "running" for c in before.containers):
                return Outcome(Status.FAILED, f"cannot start {name} from a compose file: it runs "
                               "as a host process; stop it first", Report(before))  # fmt: skip
            if not check:
                ctx.processes.forget(name)
            before = Running(name, "")
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
