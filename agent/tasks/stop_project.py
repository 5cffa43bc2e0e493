"""stop_project: compose down of a project this agent started, or the stop of a host process
project's supervised server (SIGTERM, then SIGKILL after the grace period); ok when it does
not run."""

from __future__ import annotations

from dataclasses import dataclass

from agent.processes import ProcessError
from agent.projects import check_name
from agent.tasks.base import ProjectKind
from agent.tasks.context import Running, TaskContext
from agent.tasks.outcome import Outcome, Status, counted
from gpufleet.v1 import agent_link_pb2 as pb


@dataclass(frozen=True)
class StopSpec:
    project: str


class StopProject(ProjectKind[StopSpec]):
    kind = "stop_project"

    def parse(self, request: pb.TaskRequest) -> StopSpec:
        return StopSpec(check_name(request.stop_project.project))

    async def run(self, ctx: TaskContext, spec: StopSpec, check: bool) -> Outcome[Running]:
        name = spec.project
        before = await ctx.running(name)
        if not before.containers:
            return Outcome(Status.OK, f"{name} is not running", before)
        if check:
            return Outcome(Status.CHANGED, f"would stop {name}", before)
        if ctx.processes.is_process(name):
            what = before.containers[0].container_id
            ctx.progress("stop", f"stopping {name} ({what})")
            try:
                await ctx.processes.stop(name)
            except ProcessError as exc:
                return Outcome(Status.FAILED, str(exc), await ctx.running(name))
            finally:
                ctx.watcher.touched(name)
            return Outcome(Status.CHANGED, f"stopped {name} ({what})", Running(name, ""))
        project = ctx.store.project(name)
        if not project.compose_file.is_file():
            message = f"{name} was not started by this agent: refusing to stop it"
            return Outcome(Status.FAILED, message)
        count = counted(len(before.containers), "container")
        ctx.progress("compose down", f"stopping {name} ({count})")
        async with ctx.compose_lock:
            done = await ctx.podman.down(name, project.compose_file)
        ctx.watcher.touched(name)
        ctx.progress("compose down", f"compose down ended with exit status {done.code}")
        if done.code != 0:
            after = await ctx.running(name)
            return Outcome(Status.FAILED, f"compose down failed: {done.tail()}", after)
        message = f"stopped {name} ({count})"
        return Outcome(Status.CHANGED, message, Running(name, ""))
