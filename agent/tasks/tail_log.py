"""tail_log: the last lines a project wrote, oldest first.

A host process project: the last lines of its server's log file (its rotated files too when
the current one holds fewer). A compose project: `podman logs --tail N` of each container,
each line prefixed with its service's name. At most DEFAULT_LINES unless asked (MAX_LINES at
most), and at most MAX_BYTES (the newest kept). With `env` instead of a project: the last lines
of that llama-cpp-python environment's build log (kept after a failed build).
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.envs.record import split_name
from agent.logtail import DEFAULT_LINES, MAX_BYTES, MAX_LINES, newest, tail_files
from agent.projects import check_name
from agent.tasks.base import TaskKind
from agent.tasks.context import TaskContext
from agent.tasks.outcome import Outcome, Status, counted
from gpufleet.v1 import agent_link_pb2 as pb


@dataclass(frozen=True)
class TailSpec:
    project: str
    lines: int
    env: str = ""  # set: an environment's build log instead of a project


class TailLog(TaskKind[TailSpec, str]):
    kind = "tail_log"

    def parse(self, request: pb.TaskRequest) -> TailSpec:
        task = request.tail_log
        lines = min(task.lines or DEFAULT_LINES, MAX_LINES)
        if task.env:
            split_name(task.env)
            return TailSpec("", lines, task.env)
        return TailSpec(check_name(task.project), lines)

    async def run(self, ctx: TaskContext, spec: TailSpec, check: bool) -> Outcome[str]:
        name = spec.project  # reading changes nothing: check mode reads too
        if spec.env:
            log_file = ctx.envs.log_file(spec.env)
            if not log_file.is_file():
                return Outcome(Status.FAILED, f"no build log of environment {spec.env} on this "
                               "node: it was not built here")  # fmt: skip
            lines = tail_files([log_file], spec.lines, MAX_BYTES)
            return Outcome(Status.OK, f"{counted(len(lines), 'line')} of the build log of "
                           f"{spec.env}", "\n".join(lines))  # fmt: skip
        if ctx.processes.is_process(name):
            lines = ctx.processes.tail(name, spec.lines, MAX_BYTES)
        elif ctx.store.project(name).compose_file.is_file():
            lines = []
            for container in (await ctx.running(name)).containers:
                text = await ctx.podman.logs(container.container_id, spec.lines)
                lines += [f"{container.service}: {line}" for line in text.splitlines()]
            lines = newest(lines, MAX_BYTES)
        else:
            return Outcome(Status.FAILED, f"no project {name} on this node: it has not run here")
        return Outcome(Status.OK, f"{counted(len(lines), 'line')} of {name}", "\n".join(lines))

    def fill(self, result: pb.TaskResult, data: str) -> None:
        result.log = data
