"""Running one task through the agent's real runner and registry, as the link would."""

from __future__ import annotations

import asyncio

from agent.main import task_kinds
from agent.tasks.context import TaskContext
from agent.tasks.runner import Registry, TaskRunner
from gpufleet.v1 import agent_link_pb2 as pb


async def answer(runner: TaskRunner, request: pb.TaskRequest) -> list[pb.AgentMessage]:
    """Submit the request; every message the runner sent for it, up to its result."""
    sent: list[pb.AgentMessage] = []
    done = asyncio.Event()

    def emit(message: pb.AgentMessage) -> None:
        sent.append(message)
        if message.HasField("task_result"):
            done.set()

    runner.attach(emit)
    runner.submit(request)
    await asyncio.wait_for(done.wait(), 10)
    return sent


def run_task(
    context: TaskContext, request: pb.TaskRequest, kinds: Registry | None = None
) -> pb.TaskResult:
    runner = TaskRunner(task_kinds() if kinds is None else kinds, context)
    return asyncio.run(answer(runner, request))[-1].task_result
