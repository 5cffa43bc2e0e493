"""The task runner: a kind registered in one line runs end to end, progress reaches only the
stream that asked and is throttled, cancels answer CANCELLED with what runs now, crashes and
shutdowns leave the agent standing."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from agent.compose import Completed, Podman, Runner
from agent.main import task_kinds
from agent.probes import NoProbe
from agent.projects import ProjectStore
from agent.tasks.base import TaskKind
from agent.tasks.context import TaskContext
from agent.tasks.outcome import Outcome, Status
from agent.tasks.runner import TaskRunner, registry
from gpufleet.v1 import agent_link_pb2 as pb
from gpufleet.v1 import types_pb2
from tests.agent.support import answer, run_task


@dataclass(frozen=True)
class Greeting:
    text: str


class Chatty(TaskKind[None, Greeting]):
    """A dummy kind on an existing TaskRequest field: reports a burst of progress in two
    phases, then may wait for the test, then answers."""

    kind = "gather_facts"

    def __init__(self, go_on: asyncio.Event | None = None, burst: int = 100) -> None:
        self.go_on, self.burst = go_on, burst

    def parse(self, request: pb.TaskRequest) -> None:
        return None

    async def run(self, ctx: TaskContext, spec: None, check: bool) -> Outcome[Greeting]:
        for i in range(self.burst):
            ctx.progress("count", f"at {i}", 100.0 * i / self.burst)
        ctx.progress("wait", "waiting for the test")
        if self.go_on is not None:
            await self.go_on.wait()
        ctx.progress("wait", "done waiting")
        if check:
            raise RuntimeError("boom")
        return Outcome(Status.CHANGED, "hello", Greeting("hi"))

    def fill(self, result: pb.TaskResult, data: Greeting) -> None:
        result.diff = data.text


async def nothing_runs(argv: list[str], env: Mapping[str, str], limit_s: float) -> Completed:
    return Completed(0, "[]", "")


def context(tmp_path: Path, podman: Runner = nothing_runs) -> TaskContext:
    return TaskContext.create(ProjectStore(tmp_path), Podman("gpu-a", run=podman), NoProbe(), {})


def progress(sent: list[pb.AgentMessage]) -> list[tuple[str, str]]:
    return [(m.task_event.progress.phase, m.task_event.progress.message)
            for m in sent if m.HasField("task_event")]  # fmt: skip


def test_a_kind_registered_in_one_line_runs_end_to_end(tmp_path: Path) -> None:
    request = pb.TaskRequest(task_id="t1", gather_facts=pb.GatherFacts())
    result = run_task(context(tmp_path), request, registry(Chatty()))
    assert (result.task_id, result.status, result.message, result.diff) == (
        "t1", types_pb2.TASK_STATUS_CHANGED, "hello", "hi")  # fmt: skip


def test_progress_is_throttled_but_phase_changes_and_the_last_event_arrive(
    tmp_path: Path,
) -> None:
    runner = TaskRunner(registry(Chatty()), context(tmp_path))
    sent = asyncio.run(answer(runner, pb.TaskRequest(task_id="t1", gather_facts=pb.GatherFacts())))
    assert progress(sent) == [
        ("count", "at 0"),  # the first at once; the 98 after it held back and replaced
        ("count", "at 99"),  # the phase's last, before the next phase
        ("wait", "waiting for the test"),
        ("wait", "done waiting"),  # the last before the result
    ]
    assert sent[0].task_event.task_id == "t1" and sent[0].task_event.progress.percent == 0.0
    assert sent[-1].HasField("task_result")


def test_held_back_progress_goes_out_when_its_time_comes(tmp_path: Path) -> None:
    async def scenario() -> None:
        go_on = asyncio.Event()
        runner = TaskRunner(registry(Chatty(go_on, burst=0)), context(tmp_path))
        sent: list[pb.AgentMessage] = []
        runner.attach(sent.append)
        runner.submit(pb.TaskRequest(task_id="t1", gather_facts=pb.GatherFacts()))
        await asyncio.sleep(0.05)
        assert progress(sent) == [("wait", "waiting for the test")]
        await asyncio.sleep(0.5)
        assert len(sent) == 1  # nothing new held back: nothing sent
        go_on.set()
        await asyncio.sleep(0.05)
        assert progress(sent)[-1] == ("wait", "done waiting") and sent[-1].HasField("task_result")

    asyncio.run(scenario())


def test_progress_and_result_go_only_to_a_stream_that_asked(tmp_path: Path) -> None:
    async def scenario() -> None:
        go_on = asyncio.Event()
        runner = TaskRunner(registry(Chatty(go_on, burst=0)), context(tmp_path))
        request = pb.TaskRequest(task_id="t1", gather_facts=pb.GatherFacts())
        first: list[pb.AgentMessage] = []
        runner.attach(first.append)
        runner.submit(request)
        await asyncio.sleep(0.05)
        second: list[pb.AgentMessage] = []
        runner.attach(second.append)  # a reconnect: the new stream has not asked yet
        go_on.set()
        await asyncio.sleep(0.05)
        assert progress(first) == [("wait", "waiting for the test")] and second == []
        runner.submit(request)  # re-sent after the reconnect: answered from the record
        assert [m.task_result.message for m in second] == ["hello"]

    asyncio.run(scenario())


def test_a_resent_task_runs_once_and_a_crash_is_a_failed_result(tmp_path: Path) -> None:
    async def scenario() -> None:
        go_on = asyncio.Event()
        runner = TaskRunner(registry(Chatty(go_on, burst=0)), context(tmp_path))
        sent: list[pb.AgentMessage] = []
        runner.attach(sent.append)
        request = pb.TaskRequest(task_id="t1", check_mode=True, gather_facts=pb.GatherFacts())
        runner.submit(request)
        runner.submit(request)  # while it runs: ignored
        go_on.set()
        await asyncio.sleep(0.05)
        runner.submit(request)  # after: answered from the record
        results = [m.task_result for m in sent if m.HasField("task_result")]
        assert [r.status for r in results] == [types_pb2.TASK_STATUS_FAILED] * 2
        assert results[0] == results[1] and results[0].message == "RuntimeError: boom"
        runner.cancel("t1")  # finished: ignored
        runner.cancel("unknown")
        await asyncio.sleep(0.05)
        assert len([m for m in sent if m.HasField("task_result")]) == 2

    asyncio.run(scenario())


def test_shutdown_cancels_running_tasks(tmp_path: Path) -> None:
    async def scenario() -> None:
        runner = TaskRunner(registry(Chatty(asyncio.Event())), context(tmp_path))
        sent: list[pb.AgentMessage] = []
        runner.attach(sent.append)
        runner.submit(pb.TaskRequest(task_id="t1", gather_facts=pb.GatherFacts()))
        await asyncio.sleep(0.05)
        await asyncio.wait_for(runner.shutdown(), 2)
        assert not any(m.HasField("task_result") for m in sent)

    asyncio.run(scenario())


class HangingUp:
    """podman at the edge: `ps` shows one container of the project; compose up never ends."""

    def __init__(self) -> None:
        self.up_started = asyncio.Event()

    async def __call__(self, argv: list[str], env: Mapping[str, str], limit: float) -> Completed:
        if "ps" in argv:
            rows = [{"Id": "c1", "State": "created",
                     "Labels": {"com.docker.compose.service": "web"}}]  # fmt: skip
            return Completed(0, json.dumps(rows), "")
        self.up_started.set()
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")


COMPOSE = "services: {web: {image: x}}\n"


def cancelled(tmp_path: Path, request: pb.TaskRequest) -> list[pb.AgentMessage]:
    async def scenario() -> list[pb.AgentMessage]:
        podman = HangingUp()
        runner = TaskRunner(task_kinds(), context(tmp_path, podman))
        sent: list[pb.AgentMessage] = []
        runner.attach(sent.append)
        runner.submit(request)
        await asyncio.wait_for(podman.up_started.wait(), 5)
        runner.cancel(request.task_id)
        for _ in range(100):
            if sent and sent[-1].HasField("task_result"):
                break
            await asyncio.sleep(0.02)
        return sent

    return asyncio.run(scenario())


def test_a_cancelled_start_says_what_it_was_doing_and_what_runs_now(tmp_path: Path) -> None:
    digest = hashlib.sha256(COMPOSE.encode()).hexdigest()
    sent = cancelled(tmp_path, pb.TaskRequest(task_id="s1", start_project=pb.StartProject(
        project="pair", compose=COMPOSE, digest=digest)))  # fmt: skip
    result = sent[-1].task_result
    assert result.status == types_pb2.TASK_STATUS_CANCELLED, result.message
    assert result.message == "cancelled by the hub during compose up: starting pair"
    # What runs is not the sent configuration until an up succeeds: no digest claimed.
    assert result.project.name == "pair" and result.project.digest == ""
    assert [(s.name, s.state) for s in result.project.services] == [("web", "created")]
    assert progress(sent) == [("compose up", "starting pair")]


def test_a_cancelled_apply_reports_the_project_in_its_assignment(tmp_path: Path) -> None:
    project = tmp_path / "projects" / "pair"
    project.mkdir(parents=True)
    (project / "compose.yaml").write_text(COMPOSE)
    web = pb.ServiceAssignment(service="web", here=True, gpus=[0])
    sent = cancelled(tmp_path, pb.TaskRequest(task_id="a1", apply_assignment=pb.ApplyAssignment(
        project="pair", services=[web])))  # fmt: skip
    result = sent[-1].task_result
    assert result.status == types_pb2.TASK_STATUS_CANCELLED
    assert result.message == "cancelled by the hub during recreate: recreating web"
    assert result.assignment.project.name == "pair"
    assert [s.name for s in result.assignment.project.services] == ["web"]


def test_wait_healthy_reports_how_many_are_healthy_and_what_the_failing_check_sees(
    tmp_path: Path,
) -> None:
    check = pb.HealthCheck(service="web", url="http://127.0.0.1:${NO_PORT:-9}/health")
    check.timeout.FromSeconds(1)
    check.interval.FromMilliseconds(200)
    request = pb.TaskRequest(task_id="h1", wait_healthy=pb.WaitHealthy(
        project="pair", checks=[check]))  # fmt: skip
    runner = TaskRunner(task_kinds(), context(tmp_path))
    sent = asyncio.run(answer(runner, request))
    first = sent[0].task_event.progress
    assert (first.phase, first.percent) == ("health", 0.0)
    assert first.message.startswith("0 of 1 services healthy; web: http://127.0.0.1:9/health gave")
    assert sent[-1].task_result.status == types_pb2.TASK_STATUS_FAILED
