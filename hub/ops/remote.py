"""NodeAgent over a live agent stream: each step is a task (built in hub/ops/tasks.py), its
result read back into domain values here and in hub/ops/running.py."""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import Callable, Collection

from gpufleet.v1 import agent_link_pb2 as pb
from gpufleet.v1 import types_pb2
from hub.configs import Configuration
from hub.envs.view import EnvBuild, EnvView, env_from_proto
from hub.ops import tasks
from hub.ops.cancel import Cancel
from hub.ops.running import fallback_lines, ran_after_cancel, running_from_proto
from hub.ops.steps import Cancelled, StepResult, Unreachable
from hub.ops.tasks import COMPOSE_LIMIT_S, built
from hub.registry.caches import CachedView
from hub.registry.convert_caches import cached_from_proto
from hub.sessions import AgentSession, NodeDisconnected, TaskProgress

STATUS = {
    types_pb2.TASK_STATUS_OK: "ok",
    types_pb2.TASK_STATUS_CHANGED: "changed",
    types_pb2.TASK_STATUS_SKIPPED: "ok",
    types_pb2.TASK_STATUS_CANCELLED: "cancelled",
}
SLACK_S = 60.0  # added to a task's own time limit; past both the hub cancels the task
# How long a cancelled task may take to answer (its podman processes are killed at once).
CANCEL_GRACE_S = 20.0  # more than the agent takes to say what runs after a cancel (15 s)


# Task ids are the agents' idempotency keys: unique across hub restarts (this run's random
# part) and within a run (a counter), without a uuid per task.
_RUN = secrets.token_hex(4)
_TASKS = itertools.count(1)
TAIL_LIMIT_S = 30.0  # reading a log file's tail, or podman logs
# An environment build: a compile takes 5-15 minutes, more on a loaded 2-core machine.
BUILD_LIMIT_S = 3 * 3600.0


class RemoteAgent:
    """One node's agent as an operation sees it: each step is a task on the node's stream,
    its progress goes to `on_progress`, and setting `cancel` cancels the task on the node."""

    def __init__(
        self,
        session: AgentSession,
        operation_id: str,
        cancel: Cancel | None = None,
        on_progress: Callable[[str, TaskProgress], None] = lambda _task, _event: None,
        observe: Callable[[str, float], None] = lambda _step, _seconds: None,
    ) -> None:
        self.session = session
        self.operation_id = operation_id
        self.cancel = cancel or Cancel()
        self.on_progress = on_progress
        self.observe = observe

    async def _run(
        self, request: pb.TaskRequest, step: str, limit_s: float = COMPOSE_LIMIT_S
    ) -> tuple[StepResult, pb.TaskResult]:
        request.task_id = task_id = f"{self.operation_id}-{_RUN}-{next(_TASKS)}"
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            result = await self._await(request, step, limit_s)
        finally:
            self.observe(step, loop.time() - began)
        if result is None:
            kind = request.WhichOneof("task")
            failed = pb.TaskResult(task_id=task_id, status=types_pb2.TASK_STATUS_FAILED)
            return StepResult("failed", f"{kind} gave no result within {limit_s:.0f} s; "
                                        "cancelled it on the node"), failed  # fmt: skip
        if result.HasField("project"):
            self.session.project = running_from_proto(result.project)
        return StepResult(STATUS.get(result.status, "failed"), result.message), result

    async def _await(
        self, request: pb.TaskRequest, step: str, limit_s: float
    ) -> pb.TaskResult | None:
        """The task's result; None when it gave none in time (it is cancelled then). Raises
        Cancelled once the operation is cancelled, Unreachable when the node goes away."""
        task_id = request.task_id
        if self.cancel.is_set():  # cancelled between two steps: start nothing more
            raise Cancelled(step, self.session.project)
        try:
            future = self.session.start_task(request, lambda e: self.on_progress(task_id, e))
            await self._first_of(future, limit_s)
            if future.done():
                return future.result()
            # Cancelled, or out of time: cancel it on the node and take its last word.
            self.session.cancel(task_id)
            await asyncio.wait({future}, timeout=CANCEL_GRACE_S)
            answer = future.result() if future.done() else None
        except NodeDisconnected as exc:
            raise Unreachable(str(exc)) from None
        if answer is None:
            self.session.abandon(task_id)
        else:  # what runs after the cancel, whether the operation or the time limit asked
            self.session.project = ran_after_cancel(answer, self.session.project)
        if not self.cancel.is_set():
            return None
        raise Cancelled(step, self.session.project)

    async def _first_of(self, future: asyncio.Future[pb.TaskResult], limit_s: float) -> None:
        """Until the task's result, the operation's cancel or `limit_s`, whichever comes first:
        one future and one timer per task (no task of its own, no waiter on a shared list)."""
        loop = asyncio.get_running_loop()
        woken: asyncio.Future[None] = loop.create_future()

        def wake(_: object = None) -> None:
            if not woken.done():
                woken.set_result(None)

        future.add_done_callback(wake)
        timer = loop.call_later(limit_s, wake)
        self.cancel.watch(woken)
        try:
            await woken
        finally:
            timer.cancel()
            self.cancel.unwatch(woken)
            future.remove_done_callback(wake)

    async def drain(self, config: Configuration) -> StepResult:
        request, timeout = built("drain", config, tasks.drain)
        if not request.drain.probes:
            return StepResult("ok", f"{config.name} has no drain probe: nothing to wait for")
        step, _ = await self._run(request, "drain", timeout + SLACK_S)
        return step

    async def stop(self, project: str) -> StepResult:
        step, _ = await self._run(
            pb.TaskRequest(stop_project=pb.StopProject(project=project)), "stop"
        )
        if step.status != "failed":
            self.session.project = None
        return step

    async def start(self, config: Configuration) -> StepResult:
        request, _ = built("start", config, tasks.start)
        step, answer = await self._run(request, "start")
        if not answer.HasField("assignment"):
            return step
        # A start that fell back to other GPUs reports them with the project.
        self.session.project = running_from_proto(answer.assignment.project)
        notes = tuple(fallback_lines(answer.assignment))
        return StepResult(step.status, step.message, notes)

    async def wait_healthy(
        self, config: Configuration, services: Collection[str] | None = None
    ) -> StepResult:
        """Wait for the health checks of the configuration's services (or the named ones)."""
        if services is None:
            request, limit = built("ready", config, tasks.wait_healthy)
        else:
            request, limit = tasks.wait_healthy(config, services)
        step, _ = await self._run(request, "ready", limit + SLACK_S)
        return step

    async def build_env(self, spec: EnvBuild, check: bool) -> tuple[StepResult, EnvView | None]:
        """Build (or install from the wheel cache) an environment; with `check`, the
        preflight only. The environment as the node has it afterwards."""
        task = pb.BuildEnv(
            backend=spec.backend,
            version=spec.version,
            extra_targets=list(spec.extra_targets),
            no_cache=spec.no_cache,
        )
        request = pb.TaskRequest(build_env=task, check_mode=check)
        step, answer = await self._run(request, "build", BUILD_LIMIT_S)
        return step, env_from_proto(answer.env) if answer.HasField("env") else None

    async def remove_env(self, name: str) -> StepResult:
        request = pb.TaskRequest(remove_env=pb.RemoveEnv(name=name))
        step, _ = await self._run(request, "remove", TAIL_LIMIT_S)
        return step

    async def fetch_model(
        self, task: pb.FetchModel, check: bool
    ) -> tuple[StepResult, CachedView | None]:
        """Fetch a registry entry into the node's model cache (with `check`: say what it would
        fetch, and whether it has the room); the entry as the cache holds it afterwards."""
        limit_s = 12 * 3600.0  # a model of hundreds of GB on a slow link
        request = pb.TaskRequest(fetch_model=task, check_mode=check)
        step, answer = await self._run(request, "fetch", limit_s)
        held = answer.cache.entry if answer.HasField("cache") else None
        return step, cached_from_proto(held) if held is not None and held.entry else None

    async def remove_model_cache(self, entry: str) -> StepResult:
        """Free an entry from the node's model cache; refused there while a project uses it."""
        request = pb.TaskRequest(remove_model_cache=pb.RemoveModelCache(entry=entry))
        step, _ = await self._run(request, "remove", TAIL_LIMIT_S)
        return step

    async def tail_log(self, project: str, lines: int, env: str = "") -> tuple[StepResult, str]:
        """The last `lines` lines the project (or, with `env`, the environment's build) wrote
        on the node, oldest first."""
        task = pb.TailLog(project=project, lines=lines, env=env)
        step, answer = await self._run(pb.TaskRequest(tail_log=task), "logs", TAIL_LIMIT_S)
        return step, answer.log if answer.HasField("log") else ""

    async def apply_assignment(self, task: pb.ApplyAssignment) -> tuple[StepResult, pb.TaskResult]:
        """Write a project's GPU override on the node and recreate what changed."""
        step, answer = await self._run(pb.TaskRequest(apply_assignment=task), "apply")
        if answer.HasField("assignment") and answer.assignment.HasField("project"):
            project = answer.assignment.project
            if project.services:
                self.session.project = running_from_proto(project)
        return step, answer
