"""Tasks from the wire with hostile project names: refused, and nothing written outside the
agent's state dir (a real hub never sends these; a compromised or buggy one might)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

import pytest

from agent.compose import Completed, Podman
from agent.main import task_kinds
from agent.probes.base import NoProbe
from agent.projects import ProjectStore
from agent.tasks.context import TaskContext
from agent.tasks.runner import TaskRunner
from gpufleet.v1 import agent_link_pb2 as pb
from gpufleet.v1 import types_pb2

COMPOSE = "services:\n  web:\n    image: localhost/gpufleet-test:latest\n"
HOSTILE = ["../../escape", "/etc/cron.d/x", "..", "a/../../b", "ok\x00evil", "x" * 300]


def tasks(name: str) -> list[pb.TaskRequest]:
    return [
        pb.TaskRequest(task_id=f"start-{name}", start_project=pb.StartProject(
            project=name, compose=COMPOSE, digest="0" * 64)),
        pb.TaskRequest(task_id=f"stop-{name}", stop_project=pb.StopProject(project=name)),
        pb.TaskRequest(task_id=f"apply-{name}", apply_assignment=pb.ApplyAssignment(
            project=name, services=[pb.ServiceAssignment(service="web", here=True, gpus=[0])])),
    ]  # fmt: skip


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_project_names_are_refused(tmp_path: Path, name: str) -> None:
    calls: list[tuple[str, ...]] = []

    async def podman(argv: list[str], env: Mapping[str, str], limit_s: float) -> Completed:
        calls.append(tuple(argv))  # the process edge: a hostile name must never get here
        return Completed(0, "", "")

    state = tmp_path / "state"
    context = TaskContext.create(ProjectStore(state), Podman("gpu-a", run=podman), NoProbe(), {})
    runner = TaskRunner(task_kinds(), context)
    results: list[pb.TaskResult] = []

    async def scenario() -> None:
        done = asyncio.Event()

        def received(message: pb.AgentMessage) -> None:
            results.append(message.task_result)
            if len(results) == 3:
                done.set()

        runner.attach(received)
        for request in tasks(name):
            runner.submit(request)
        await done.wait()

    asyncio.run(asyncio.wait_for(scenario(), 10))
    assert [r.status for r in results] == [types_pb2.TASK_STATUS_FAILED] * 3, results
    assert all("project name" in r.message for r in results), [r.message for r in results]
    assert calls == []  # podman was never run
    outside = [p for p in tmp_path.rglob("*") if state not in (p, *p.parents)]
    assert outside == [state] or outside == [], outside
    assert not any(p.is_file() for p in state.rglob("*") if p.name != "agent-id")
