"""Task kinds the agent runs, as a registry keyed by the TaskRequest oneof field.

Task ids are idempotency keys: a request the agent has seen is never run twice; a re-sent
one (after a reconnect) is answered with the recorded result, or ignored while it runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from agent.assignments import Assignments
from agent.convert import inventory_to_proto
from agent.probes import GpuProbe
from agent.switching import Switching
from gpufleet.v1 import agent_link_pb2 as pb
from gpufleet.v1 import types_pb2

log = logging.getLogger(__name__)

Emit = Callable[[pb.AgentMessage], None]
Handler = Callable[[pb.TaskRequest, Emit], Awaitable[pb.TaskResult]]
REMEMBERED_RESULTS = 1024


class TaskRunner:
    def __init__(self, probe: GpuProbe, switching: Switching | None = None) -> None:
        self.probe = probe
        self.handlers: dict[str, Handler] = {"gather_facts": self._gather_facts}
        if switching is not None:
            self.handlers.update(
                start_project=switching.start,
                stop_project=switching.stop,
                wait_healthy=switching.wait_healthy,
                drain=switching.drain,
                apply_assignment=Assignments(switching, probe).apply,
            )
        self._running: dict[str, asyncio.Task[None]] = {}
        self._results: OrderedDict[str, pb.TaskResult] = OrderedDict()
        self._emit: Emit = lambda _message: None
        self._asked: set[str] = set()  # task ids requested on the current stream

    def attach(self, emit: Emit) -> None:
        """Send over a new stream from now on. A task started on an earlier stream keeps
        running, but its result goes out only when the hub asks for that task id again."""
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
        elif task_id not in self._running:
            self._running[task_id] = asyncio.create_task(self._run(request), name=task_id)

    def cancel(self, task_id: str) -> None:
        """The hub gave up on the task: stop it, and send no result for it."""
        self._asked.discard(task_id)
        running = self._running.get(task_id)
        if running is not None:
            running.cancel()

    async def _run(self, request: pb.TaskRequest) -> None:
        kind = request.WhichOneof("task")
        handler = self.handlers.get(kind or "")
        try:
            if handler is None:
                result = self._failed(request, f"this agent does not support task kind {kind!r}")
            else:
                result = await handler(
                    request, lambda message: self._send(request.task_id, message)
                )
        except asyncio.CancelledError:
            result = self._failed(request, "cancelled by the hub")
        except Exception as exc:
            log.exception("task %s (%s) failed", request.task_id, kind)
            result = self._failed(request, f"{type(exc).__name__}: {exc}")
        finally:
            self._running.pop(request.task_id, None)
        result.task_id = request.task_id
        self._results[request.task_id] = result
        while len(self._results) > REMEMBERED_RESULTS:
            self._results.popitem(last=False)
        self._send(request.task_id, pb.AgentMessage(task_result=result))

    @staticmethod
    def _failed(request: pb.TaskRequest, message: str) -> pb.TaskResult:
        return pb.TaskResult(status=types_pb2.TASK_STATUS_FAILED, message=message)

    async def _gather_facts(self, request: pb.TaskRequest, emit: Emit) -> pb.TaskResult:
        found = await asyncio.to_thread(self.probe.inventory)
        return pb.TaskResult(
            status=types_pb2.TASK_STATUS_OK,
            message=f"{len(found.gpus)} GPUs ({found.probe})",
            facts=inventory_to_proto(found),
        )

    async def shutdown(self) -> None:
        for task in list(self._running.values()):
            task.cancel()
        await asyncio.gather(*self._running.values(), return_exceptions=True)
