"""tail_log: a host process's rotated log files (written by the real supervisor), a compose
project's podman logs (podman scripted at the process edge), and the bounds on both."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from agent.compose import Completed, Podman
from agent.logtail import MAX_LINES, newest, tail_files
from agent.probes import NoProbe
from agent.processes import RECORD_FILE, Processes
from agent.projects import ProjectStore
from agent.tasks.context import TaskContext
from agent.tasks.tail_log import TailLog
from gpufleet.v1 import agent_link_pb2 as pb
from gpufleet.v1 import types_pb2
from tests.agent.processes_support import (
    context,
    environment,
    free_port,
    kill_quietly,
    spec,
    start_request,
    until,
)
from tests.agent.support import run_task

NAME = "model-tiny"


@pytest.fixture
def state(tmp_path: Path) -> Iterator[Path]:
    found = tmp_path / "state"
    yield found
    for record in (found / "projects").glob(f"*/{RECORD_FILE}"):
        kill_quietly(int(record.read_text().split()[0]))


def tail(ctx: TaskContext, name: str, lines: int = 0) -> pb.TaskResult:
    return run_task(
        ctx, pb.TaskRequest(task_id="t", tail_log=pb.TailLog(project=name, lines=lines))
    )


def test_the_log_rotates_and_the_tail_reads_across_the_rotated_files(
    tmp_path: Path, state: Path
) -> None:
    processes = Processes(state, rotate_bytes=200, keep=2)
    ctx = context(state, processes, environment(tmp_path))
    started = run_task(ctx, start_request(NAME, spec(tmp_path, free_port(), "--lines=60")))
    assert started.status == types_pb2.TASK_STATUS_CHANGED, started.message
    log = processes.directory(NAME) / "server.log"
    until(lambda: any("greeting" in line for line in processes.tail(NAME, 3)))
    files = [log, log.with_name("server.log.1"), log.with_name("server.log.2")]
    assert all(f.is_file() and f.stat().st_size <= 200 for f in files)
    assert not log.with_name("server.log.3").exists()  # keep=2: older files are gone
    found = tail(ctx, NAME, 20)
    assert found.status == types_pb2.TASK_STATUS_OK and found.message == f"20 lines of {NAME}"
    lines = found.log.splitlines()
    # Oldest first, contiguous across the files: the current file alone holds fewer.
    assert lines == [f"line {n:04d} of tiny" for n in range(41, 60)] + ["greeting: hello"]
    assert len(log.read_text().splitlines()) < 20
    assert tail(ctx, NAME, 3).log.splitlines() == ["line 0058 of tiny", "line 0059 of tiny",
                                                   "greeting: hello"]  # fmt: skip


def test_lines_are_capped_and_an_unknown_project_fails(tmp_path: Path, state: Path) -> None:
    request = pb.TaskRequest(tail_log=pb.TailLog(project=NAME, lines=10**6))
    assert TailLog().parse(request).lines == MAX_LINES
    assert TailLog().parse(pb.TaskRequest(tail_log=pb.TailLog(project=NAME))).lines == 100
    ctx = context(state, Processes(state), environment(tmp_path))
    unknown = tail(ctx, "model-nothing")
    assert unknown.status == types_pb2.TASK_STATUS_FAILED
    assert unknown.message == "no project model-nothing on this node: it has not run here"


def test_tail_files_keeps_the_newest_lines_within_the_byte_limit(tmp_path: Path) -> None:
    current, older = tmp_path / "log", tmp_path / "log.1"
    older.write_text("".join(f"old {n}\n" for n in range(5)))
    current.write_text("new 0\nnew 1\npartial")  # a line still being written
    assert tail_files([current, older, tmp_path / "log.2"], 4) == ["old 4", "new 0", "new 1",
                                                                  "partial"]  # fmt: skip
    assert tail_files([current, older], 100, max_bytes=20) == ["new 0", "new 1", "partial"]
    assert tail_files([current, older], 100, max_bytes=22) == ["new 0", "new 1", "partial"]
    assert tail_files([current, older], 100, max_bytes=26) == ["old 4", "new 0", "new 1",
                                                               "partial"]  # fmt: skip
    assert tail_files([tmp_path / "missing"], 10) == []
    assert newest(["a" * 10, "b", "c"], max_bytes=5) == ["b", "c"]


COMPOSE = """
services:
  web: {image: localhost/x}
  db: {image: localhost/y}
"""


class Logs:
    """podman ps and podman logs, as a test sets them."""

    def __init__(self) -> None:
        self.asked: list[list[str]] = []

    async def run(self, argv: list[str], env: Mapping[str, str], limit_s: float) -> Completed:
        self.asked.append(argv)
        if argv[:2] == ["podman", "ps"]:
            entries = [
                {"Id": f"id-{s}", "State": "running", "Labels": {"com.docker.compose.service": s}}
                for s in ("web", "db")
            ]
            return Completed(0, json.dumps(entries), "")  # fmt: skip
        assert argv[:3] == ["podman", "logs", "--tail"]
        service = argv[4].removeprefix("id-")
        return Completed(0, f"{service} started\n{service} ready\n", "")


def test_a_compose_projects_tail_is_each_containers_podman_logs(tmp_path: Path) -> None:
    store = ProjectStore(tmp_path)
    store.write("alpha", COMPOSE, hashlib.sha256(COMPOSE.encode()).hexdigest())
    podman = Logs()
    ctx = TaskContext.create(store, Podman("gpu-a", run=podman.run), NoProbe(), {})
    found = tail(ctx, "alpha", 7)
    assert found.status == types_pb2.TASK_STATUS_OK
    assert found.log.splitlines() == ["db: db started", "db: db ready", "web: web started",
                                      "web: web ready"]  # fmt: skip
    asked = [argv[:4] for argv in podman.asked if argv[1] == "logs"]
    assert asked == [["podman", "logs", "--tail", "7"]] * 2
