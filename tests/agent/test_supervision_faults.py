"""Host process projects under faults and hostile input: a log that cannot rotate, a server
that exits while a child holds its output, two starts at once, a spec that would run code, a
proxy in the agent's environment, a log tail across rotated files. Real processes throughout."""

from __future__ import annotations

import asyncio
import http.server
import re
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import logtail, supervise
from agent.probing import Check, http_get, wait_healthy
from agent.processes import ProcessError, Processes
from gpufleet import process
from tests.agent.processes_support import environment, free_port, kill_quietly, spec


def supervised(tmp: Path, command: list[str], rotate: int = 10_000, keep: int = 1) -> Path:
    """Run the supervisor itself (no agent) over `command`; its directory."""
    directory = tmp / "project"
    directory.mkdir(exist_ok=True)
    status = supervise.main(["--dir", str(directory), "--rotate-bytes", str(rotate),
                             "--keep", str(keep), "--", *command])  # fmt: skip
    (directory / "status").write_text(str(status))
    return directory


def test_a_rotation_that_fails_keeps_the_server_and_its_log(tmp_path: Path) -> None:
    directory = tmp_path / "project"
    (directory / f"{supervise.LOG_FILE}.1" / "in-the-way").mkdir(parents=True)  # cannot replace
    printing = "import sys\nfor i in range(50): print(f'line {i:03d} ' + 'x' * 20, flush=True)"
    supervised(tmp_path, [sys.executable, "-c", printing], rotate=100)
    assert (directory / supervise.EXIT_FILE).read_text().strip() == "0"  # ran to its end
    log = (directory / supervise.LOG_FILE).read_text()
    assert "line 049" in log and "the server exited (exit status 0)" in log


def test_the_servers_exit_is_seen_while_a_child_still_holds_its_output(tmp_path: Path) -> None:
    leaving = ("import subprocess, sys\n"
               "subprocess.Popen(['sleep', '30'])\n"  # inherits stdout, outlives the server
               "print('bye', flush=True); sys.exit(3)")  # fmt: skip
    began = time.monotonic()
    directory = supervised(tmp_path, [sys.executable, "-c", leaving])
    assert time.monotonic() - began < 10  # not the child's 30 s
    assert (directory / supervise.EXIT_FILE).read_text().strip() == "3"
    assert "bye" in (directory / supervise.LOG_FILE).read_text()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    found = Processes(tmp_path / "state", grace_s=2)
    yield found
    for name in found.known():
        record = found.directory(name) / "supervisor"
        if record.is_file():
            kill_quietly(int(record.read_text().split()[0]))
    found.launcher.close()


def test_a_second_start_of_a_running_project_is_refused(tmp_path: Path,
                                                        processes: Processes) -> None:  # fmt: skip
    llama = environment(tmp_path) / "bin" / "python"
    found = spec(tmp_path, free_port())

    async def twice() -> None:
        await processes.start("model-x", found, llama, {})
        with pytest.raises(ProcessError, match=r"already runs .* stop it first"):
            await processes.start("model-x", found, llama, {})
        await processes.stop("model-x")

    asyncio.run(twice())


@pytest.mark.parametrize(
    ("args", "env", "refused"),
    [
        (["-c", "import os"], {}, "runs -m llama_cpp.server, not '-c import os'"),
        (["-m", "llama_cpp.server"], {"LD_PRELOAD": "/x.so"}, "LD_PRELOAD is refused"),
        (["-m", "llama_cpp.server"], {"PYTHONPATH": "/x"}, "PYTHONPATH is refused"),
        (["-m", "llama_cpp.server"], {"PATH": "/x"}, "PATH is refused"),
    ],
)
def test_a_spec_that_would_run_other_code_is_refused(
    args: list[str], env: dict[str, str], refused: str
) -> None:
    with pytest.raises(process.ProcessSpecError, match=re.escape(refused)):
        process.make("server", "cpu", args, env)
    assert process.make("server", "cpu", ["-m", "llama_cpp.server"], {"GGML_X": "1"}).env


def test_health_checks_do_not_go_through_a_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *_args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # nothing listens there
    try:
        reply = asyncio.run(http_get(f"http://127.0.0.1:{server.server_port}/health"))
    finally:
        server.shutdown()
    assert reply.status == 200, reply.describe()


def test_a_stopped_service_fails_the_wait_before_its_next_poll() -> None:
    checks = [Check("server", "http://127.0.0.1:9/v1/models", 200, 300.0, 30.0)]
    now = [0.0]

    async def asleep(seconds: float) -> None:
        now[0] += seconds

    async def gone(_services: list[str]) -> tuple[str, str] | None:
        return ("server", "its process is exited") if now[0] >= 5 else None

    verdict = asyncio.run(wait_healthy(checks, clock=lambda: now[0], sleep=asleep, gone=gone))
    assert not verdict.ok and verdict.seen == "its process is exited"
    assert verdict.waited_s < 30  # the alive check ran on time, not at the next 30 s poll


def test_a_tail_leaves_no_hole_when_the_newest_file_is_cut(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.with_name("server.log.1").write_text("old-1\nold-2\n")
    log.write_text("new-1\n" + "x" * 40 + "\nnew-2\nnew-3\n")
    found = logtail.tail_files([log, log.with_name("server.log.1")], 100, max_bytes=20)
    assert found == ["new-2", "new-3"]  # never old lines after a gap
