"""remove_env: delete a llama-cpp-python environment; refused while a running host process
project uses it (one line naming the projects) or a build of it runs. Ok when there is none."""

from __future__ import annotations

from dataclasses import dataclass

from agent.envs.protos import env_to_proto
from agent.envs.record import EnvRecord, split_name
from agent.tasks.base import TaskKind
from agent.tasks.context import TaskContext
from agent.tasks.outcome import Outcome, Status
from gpufleet.v1 import agent_link_pb2 as pb


@dataclass(frozen=True)
class RemoveSpec:
    name: str


class RemoveEnv(TaskKind[RemoveSpec, EnvRecord]):
    kind = "remove_env"

    def parse(self, request: pb.TaskRequest) -> RemoveSpec:
        name = request.remove_env.name
        split_name(name)
        return RemoveSpec(name)

    async def run(self, ctx: TaskContext, spec: RemoveSpec, check: bool) -> Outcome[EnvRecord]:
        name = spec.name
        record = ctx.envs.read(name)
        if record is None and not ctx.envs.directory(name).exists():
            return Outcome(Status.OK, f"no environment {name} on this node")
        if name in ctx.envs.active:
            return Outcome(Status.FAILED, f"{name} is being built: cancel its build first", record)
        users = ctx.envs.users(name, ctx.processes)
        if users:
            return Outcome(Status.FAILED, f"{name} is in use by {', '.join(users)}: stop "
                           f"{'it' if len(users) == 1 else 'them'} first", record)  # fmt: skip
        if check:
            return Outcome(Status.CHANGED, f"would remove {name}", record)
        await ctx.envs.discard(name)
        return Outcome(Status.CHANGED, f"removed {name}", record)

    def fill(self, result: pb.TaskResult, data: EnvRecord) -> None:
        result.env.CopyFrom(env_to_proto(data))
