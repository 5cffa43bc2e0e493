"""Runs the task kinds the hub asks for, one asyncio task each, and answers over the link.

Task ids are idempotency keys: a request the agent has seen is never run twice; a re-sent one
(after a reconnect) is answered with the recorded result, or ignored while it runs. Progress
and results go only to a stream that asked for that task id. A crash in a task is a failed
result, never a dead agent. A cancel from the hub stops the task, which then answers
CANCELLED with what it was doing and, for project tasks, what runs now.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from agent.convert import progress_to_proto, task_result
from agent.tasks.base import TaskKind
from agent.tasks.context import TaskContext
from agent.tasks.outcome import Outcome, Status
from agent.tasks.throttle import Progress, Throttle
from gpufleet.v1 import agent_link_pb2 as pb

log = logging.getLogger(__name__)

Emit = Callable[[pb.AgentMessage], None]
Registry = Mapping[str, TaskKind[Any, Any]]
REMEMBERED_RESULTS = 1024
CANCEL_REPORT_S = 15.0  # a cancelled task's look at what runs now: the hub is waiting for it
TASK_FIELDS = frozenset(f.name for f in pb.TaskRequest.DESCRIPTOR.oneofs_by_name["task"].fields)


def registry(*kinds: TaskKind[Any, Any]) -> dict[str, TaskKind[Any, Any]]:
    """Kinds by the TaskRequest field they answer; one the protocol lacks, or twice, is a bug."""
    found: dict[str, TaskKind[Any, Any]] = {}
    for kind in kinds:
        if kind.kind not in TASK_FIELDS or kind.kind in found:
            raise ValueError(f"task kind {kind.kind!r}: no such TaskRequest field, or twice")
        found[kind.kind] = kind
    return found


@dataclass(frozen=True)
class _Job:
    kind: TaskKind[Any, Any]
    spec: Any
    context: TaskContext
    progress: Throttle
    work: asyncio.Task[Outcome[Any]]


class TaskRunner:
    def __init__(self, kinds: Registry, context: TaskContext | None = None) -> None:
        if kinds and context is None:
            raise ValueError("task kinds need a TaskContext")
        self.kinds = kinds
        # None: this agent runs no tasks (and no projects), e.g. in benchmarks.
        self.context = context
        self._jobs: dict[str, _Job] = {}
        self._watchers: set[asyncio.Task[None]] = set()
        self._results: OrderedDict[str, pb.TaskResult] = OrderedDict()
        self._emit: Emit = lambda _message: None
        self._asked: set[str] = set()  # task ids requested on the current stream
        self._closing = False

    def attach(self, emit: Emit) -> None:
        """Send over a new stream from now on. A task started on an earlier stream keeps
        running, but its progress and result go out only once the hub asks for that task id
        again."""
        self._emit = emit
        self._asked = set()

    def _send(self, task_id: str, message: pb.AgentMessage) -> None:
        if task_id in self._asked:
            self._emit(message)

    def submit(self, request: pb.TaskRequest) -> None:
        task_id = request.task_id
        self._asked.add(task_id)
        if task_id in self._results:
            self._emit(pb.AgentMessage(task_result=self._results[task_id]))
        elif task_id not in self._jobs:
            self._start(request)

    def cancel(self, task_id: str) -> None:
        """The hub gave up on the task: stop it; it answers CANCELLED. An unknown or finished
        task id is ignored."""
        job = self._jobs.get(task_id)
        if job is not None:
            job.work.cancel()

    async def shutdown(self) -> None:
        """The agent stops: cancel what runs (podman's process groups die with it); nobody
        waits for those results any more."""
        self._closing = True
        for job in self._jobs.values():
            job.work.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)

    def _start(self, request: pb.TaskRequest) -> None:
        task_id, name = request.task_id, request.WhichOneof("task")
        kind = self.kinds.get(name or "")
        if kind is None or self.context is None:
            message = f"this agent does not support task kind {name!r}"
            self._record(task_result(task_id, Status.FAILED, message))
            return
        try:
            spec = kind.parse(request)
        except ValueError as exc:  # refused: what came from the wire is not acceptable
            self._record(task_result(task_id, Status.FAILED, str(exc)))
            return
        except Exception as exc:
            self._record(task_result(task_id, Status.FAILED, _crash(task_id, kind, exc)))
            return

        def send(event: Progress) -> None:
            self._send(task_id, pb.AgentMessage(task_event=progress_to_proto(task_id, event)))

        progress = Throttle(send)
        context = self.context.for_task(progress)
        work = asyncio.create_task(kind.run(context, spec, request.check_mode), name=task_id)
        job = self._jobs[task_id] = _Job(kind, spec, context, progress, work)
        watcher = asyncio.create_task(self._watch(task_id, job))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)

    async def _watch(self, task_id: str, job: _Job) -> None:
        """Wait for the task (not inside it: a cancel must not cut short its answer)."""
        try:
            await asyncio.wait({job.work})
            if job.work.cancelled() and self._closing:
                return
            outcome = await self._outcome(job)
            result = task_result(task_id, outcome.status, outcome.message)
            if outcome.data is not None:
                job.kind.fill(result, outcome.data)
        except Exception as exc:  # a bug in the kind's answer: still answer
            result = task_result(task_id, Status.FAILED, _crash(task_id, job.kind, exc))
        finally:
            self._jobs.pop(task_id, None)
        job.progress.flush()
        self._record(result)

    async def _outcome(self, job: _Job) -> Outcome[Any]:
        if job.work.cancelled():
            return await self._cancelled(job)
        error = job.work.exception()
        if error is not None:
            return Outcome(Status.FAILED, _crash(job.work.get_name(), job.kind, error))
        return job.work.result()

    @staticmethod
    async def _cancelled(job: _Job) -> Outcome[Any]:
        doing = job.progress.last
        message = "cancelled by the hub " + (
            f"during {doing.describe()}" if doing else "before it reported progress"
        )
        log.info("task %s (%s) %s", job.work.get_name(), job.kind.kind, message)
        try:
            data = await asyncio.wait_for(
                job.kind.cancelled(job.context, job.spec), CANCEL_REPORT_S
            )
        except Exception as exc:
            reason = str(exc) or type(exc).__name__
            return Outcome(Status.CANCELLED, f"{message}; cannot tell what runs now: {reason}")
        return Outcome(Status.CANCELLED, message, data)

    def _record(self, result: pb.TaskResult) -> None:
        self._results[result.task_id] = result
        while len(self._results) > REMEMBERED_RESULTS:
            self._results.popitem(last=False)
        self._send(result.task_id, pb.AgentMessage(task_result=result))


def _crash(task_id: str, kind: TaskKind[Any, Any], exc: BaseException) -> str:
    """A bug in a task: logged with its traceback, and a failed result for the hub."""
    log.error("task %s (%s) failed", task_id, kind.kind, exc_info=exc)
    return f"{type(exc).__name__}: {exc}"
