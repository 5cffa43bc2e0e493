"""build_env: create the llama-cpp-python environment of a backend (agent/envs/build.py):
preflight, venv, the wheel from the cluster cache or a compile, install, verify, upload, with
progress. Ok (nothing done) when a ready environment of that name exists. A cancel kills the
build's process group and leaves the environment failed, its partial venv removed."""

from __future__ import annotations

from agent.envs.build import BuildSpec
from agent.envs.protos import env_to_proto
from agent.envs.record import DEFAULT_VERSION, EnvRecord, check_backend, check_version
from agent.tasks.base import TaskKind
from agent.tasks.context import TaskContext
from agent.tasks.outcome import Outcome, Status
from gpufleet.v1 import agent_link_pb2 as pb

MAX_TARGETS = 32


def _target(value: str) -> str:
    if not value or len(value) > 16 or not value.replace("-", "").replace(":", "").isalnum():
        raise ValueError(f"GPU target {value[:24]!r} is not a CUDA architecture (86, 90a) or "
                         "gfx target (gfx1100)")  # fmt: skip
    return value


class BuildEnv(TaskKind[BuildSpec, EnvRecord]):
    kind = "build_env"

    def parse(self, request: pb.TaskRequest) -> BuildSpec:
        task = request.build_env
        if len(task.extra_targets) > MAX_TARGETS:
            raise ValueError(f"at most {MAX_TARGETS} extra GPU targets")
        return BuildSpec(
            check_backend(task.backend),
            check_version(task.version or DEFAULT_VERSION),
            tuple(_target(t) for t in task.extra_targets),
            task.no_cache,
        )

    async def run(self, ctx: TaskContext, spec: BuildSpec, check: bool) -> Outcome[EnvRecord]:
        if ctx.builder is None:
            return Outcome(Status.FAILED, "this agent builds no llama-cpp-python environments")
        built = await ctx.builder.build(spec, ctx.progress, check)
        if not built.ok:  # the environment as the node has it (none after a failed preflight)
            return Outcome(Status.FAILED, built.message, ctx.envs.read(spec.name))
        return Outcome(Status.CHANGED if built.changed else Status.OK, built.message, built.record)

    def fill(self, result: pb.TaskResult, data: EnvRecord) -> None:
        result.env.CopyFrom(env_to_proto(data))

    async def cancelled(self, ctx: TaskContext, spec: BuildSpec) -> EnvRecord | None:
        return ctx.envs.read(spec.name)
