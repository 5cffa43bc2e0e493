"""Host process projects on real processes: the supervisor, the start, stop, health and
adoption paths of the agent's tasks, over a stand-in model server run from a stand-in
llama-cpp-python environment (tests/agent/processes_support.py)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import managed
from agent.compose import Podman
from agent.health import HealthMonitor
from agent.probes import GpuInfo, GpuProcess, ProbeResult
from agent.processes import RECORD_FILE, Processes, read_stat
from agent.projects import ProjectStore
from gpufleet.v1 import agent_link_pb2 as pb
from gpufleet.v1 import types_pb2
from tests.agent.processes_support import (
    alive,
    context,
    environment,
    free_port,
    health_proto,
    kill_quietly,
    no_podman,
    server_pid,
    spec,
    start_request,
    until,
)
from tests.agent.support import run_task

NAME = "model-tiny"
OK, CHANGED, FAILED = (types_pb2.TASK_STATUS_OK, types_pb2.TASK_STATUS_CHANGED,
                       types_pb2.TASK_STATUS_FAILED)  # fmt: skip


@pytest.fixture
def state(tmp_path: Path) -> Iterator[Path]:
    """The agent's state dir; whatever supervisors the test left are killed after it."""
    found = tmp_path / "state"
    yield found
    for record in (found / "projects").glob(f"*/{RECORD_FILE}"):
        kill_quietly(int(record.read_text().split()[0]))


def stop_request(name: str = NAME) -> pb.TaskRequest:
    return pb.TaskRequest(task_id="t-stop", stop_project=pb.StopProject(project=name))


def wait_request(check: pb.HealthCheck, name: str = NAME) -> pb.TaskRequest:
    return pb.TaskRequest(task_id="t-wait",
                          wait_healthy=pb.WaitHealthy(project=name, checks=[check]))  # fmt: skip


def tail_request(lines: int = 0, name: str = NAME) -> pb.TaskRequest:
    return pb.TaskRequest(task_id="t-tail", tail_log=pb.TailLog(project=name, lines=lines))


def test_start_health_tail_and_stop(tmp_path: Path, state: Path) -> None:
    processes = Processes(state)
    ctx = context(state, processes, environment(tmp_path))
    found = spec(tmp_path, free_port())
    started = run_task(ctx, start_request(NAME, found))
    assert started.status == CHANGED, started.message
    [service] = started.project.services
    pid = server_pid(processes, NAME)
    assert (service.name, service.state) == ("server", "running")
    assert service.container_id == f"pid {pid}" and started.project.digest == found.digest()
    # The supervisor leads a session of its own, away from the agent's.
    supervisor = int((processes.directory(NAME) / RECORD_FILE).read_text().split()[0])
    leader = read_stat(supervisor)
    assert leader is not None and leader.session == supervisor
    assert os.getsid(0) != supervisor

    assert found.health is not None
    waited = run_task(ctx, wait_request(health_proto(found.health)))
    assert waited.status == OK, waited.message
    other = health_proto(found.health)
    other.expect_model, other.timeout.seconds, other.timeout.nanos = "other", 1, 0
    refused = run_task(ctx, wait_request(other))
    assert refused.status == FAILED
    assert "HTTP 200 listing tiny, not other (process running)" in refused.message
    assert "last log lines: request /v1/models" in refused.message  # from its log file

    again = run_task(ctx, start_request(NAME, found, task_id="t-again"))
    assert again.status == OK and "nothing restarted" in again.message
    assert server_pid(processes, NAME) == pid

    tail = run_task(ctx, tail_request())
    assert tail.status == OK
    lines = tail.log.splitlines()
    assert lines[:4] == [
        "line 0000 of tiny",
        "line 0001 of tiny",
        "line 0002 of tiny",
        "greeting: hello",
    ]  # the spec's environment reached the server
    assert "request /v1/models" in lines

    stopped = run_task(ctx, stop_request())
    assert stopped.status == CHANGED and f"pid {pid}" in stopped.message
    assert not alive(pid) and not alive(supervisor)
    assert not stopped.project.services
    assert run_task(ctx, stop_request()).status == OK  # nothing runs: nothing to do
    assert "the server exited (signal 15)" in run_task(ctx, tail_request()).log  # the log stays


def test_a_server_that_ignores_sigterm_is_killed_after_the_grace_period(
    tmp_path: Path, state: Path
) -> None:
    processes = Processes(state, grace_s=1.0)
    ctx = context(state, processes, environment(tmp_path))
    started = run_task(ctx, start_request(NAME, spec(tmp_path, free_port(), "--ignore-term")))
    assert started.status == CHANGED
    pid = server_pid(processes, NAME)
    until(lambda: "greeting" in "\n".join(processes.tail(NAME, 10)))  # SIG_IGN is in place
    began = time.monotonic()
    stopped = run_task(ctx, stop_request())
    assert stopped.status == CHANGED, stopped.message
    assert time.monotonic() - began >= 1.0
    assert not alive(pid)


def test_another_definition_replaces_the_running_one(tmp_path: Path, state: Path) -> None:
    processes = Processes(state)
    ctx = context(state, processes, environment(tmp_path))
    first = spec(tmp_path, free_port())
    assert run_task(ctx, start_request(NAME, first)).status == CHANGED
    old = server_pid(processes, NAME)
    second = spec(tmp_path, free_port(), model="small", expect="small")
    started = run_task(ctx, start_request(NAME, second, task_id="t-second"))
    assert started.status == CHANGED and started.project.digest == second.digest()
    assert not alive(old)
    new = server_pid(processes, NAME)
    assert new != old and alive(new)


def test_a_start_without_the_backends_environment_names_the_fix(
    tmp_path: Path, state: Path
) -> None:
    ctx = context(state, Processes(state), None)
    result = run_task(ctx, start_request(NAME, spec(tmp_path, free_port())))
    assert result.status == FAILED
    assert result.message == (
        "no llama-cpp-python environment for backend cpu on this node: build one with "
        "`hubctl envs build --backend cpu --node N`, or start the agent with --llama-env cpu=DIR"
    )
    assert not (state / "projects" / NAME).exists()


def test_a_spec_that_does_not_match_its_digest_is_refused(tmp_path: Path, state: Path) -> None:
    ctx = context(state, Processes(state), environment(tmp_path))
    found = spec(tmp_path, free_port())
    result = run_task(ctx, start_request(NAME, found, digest="0" * 64))
    assert result.status == FAILED and "does not match its digest" in result.message
    assert not (state / "projects" / NAME).exists()


def test_an_exited_server_is_reported_with_its_status_and_unhealthy(
    tmp_path: Path, state: Path
) -> None:
    processes = Processes(state)
    ctx = context(state, processes, environment(tmp_path))
    assert run_task(ctx, start_request(NAME, spec(tmp_path, free_port(), "--exit=3"))).status == (
        CHANGED)  # fmt: skip
    until(lambda: processes.state(NAME).exit_status == 3)
    assert [c.state for c in asyncio.run(ctx.running(NAME)).containers] == ["exited"]
    monitor = HealthMonitor(ProjectStore(state), Podman("gpu-a", run=no_podman), {},
                            processes=processes)  # fmt: skip
    [observed] = asyncio.run(monitor.recheck()) or []
    assert observed.health["server"].state == "unhealthy"
    assert observed.health["server"].message == "its process exited (exit status 3)"
    assert run_task(ctx, stop_request()).status == CHANGED  # clears the exited server
    assert not asyncio.run(ctx.running(NAME)).containers


def test_the_monitor_polls_the_specs_check_with_its_model(tmp_path: Path, state: Path) -> None:
    processes = Processes(state)
    ctx = context(state, processes, environment(tmp_path))
    port = free_port()
    assert run_task(ctx, start_request(NAME, spec(tmp_path, port))).status == CHANGED
    wrong = "model-wrong"
    assert run_task(ctx, start_request(wrong, spec(tmp_path, free_port(), expect="other"),
                                       task_id="t-wrong")).status == CHANGED  # fmt: skip
    until(lambda: _answers(port))
    monitor = HealthMonitor(ProjectStore(state), Podman("gpu-a", run=no_podman), {},
                            processes=processes)  # fmt: skip
    for _ in range(50):  # until both servers listen
        found = {o.running.name: o for o in asyncio.run(monitor.recheck()) or []}
        if found[NAME].health["server"].state == "healthy" and "listing" in found[
                wrong].health["server"].message:  # fmt: skip
            break
        time.sleep(0.1)
    assert found[NAME].health["server"].state == "healthy"
    assert found[NAME].running.digest == processes.state(NAME).digest
    assert "listing tiny, not other" in found[wrong].health["server"].message
    assert found[wrong].health["server"].state != "healthy"
    # GPU processes of the servers (and their children) are gpufleet's; the test's are not.
    pid = server_pid(processes, NAME)
    gpu = GpuInfo(0, "GPU-0", "A", "nvidia", 24564, 9000,
                  processes=(GpuProcess(pid, 100), GpuProcess(os.getpid(), 100)))  # fmt: skip
    marked = managed.mark(ProbeResult("nvml", (gpu,)), set(), sessions=monitor.sessions())
    assert [p.managed for p in marked.gpus[0].processes] == [True, False]


def _answers(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=1):
            return True
    except OSError:
        return False


AGENT = """
import asyncio, sys
from pathlib import Path
from agent.processes import Processes
from gpufleet.process import from_text
asyncio.run(Processes(Path(sys.argv[1])).start(sys.argv[2], from_text(sys.argv[3]),
                                               Path(sys.argv[4]), {}))
"""


def test_a_server_outlives_the_agent_and_the_next_agent_adopts_it(
    tmp_path: Path, state: Path
) -> None:
    found = spec(tmp_path, free_port())
    llama = environment(tmp_path)
    # An agent process starts the server and exits.
    root = Path(__file__).resolve().parents[2]
    path = os.pathsep.join([str(root / "proto"), str(root)])
    subprocess.run([sys.executable, "-c", AGENT, str(state), NAME, found.text(),
                    str(llama / "bin" / "python")], check=True, timeout=30,
                   env={**os.environ, "PYTHONPATH": path})  # fmt: skip
    processes = Processes(state)  # the next agent, on the same state dir
    pid = server_pid(processes, NAME)
    assert processes.state(NAME).alive and alive(pid)
    ctx = context(state, processes, llama)
    assert found.health is not None
    assert run_task(ctx, wait_request(health_proto(found.health))).status == OK
    again = run_task(ctx, start_request(NAME, found))
    assert again.status == OK and "nothing restarted" in again.message
    assert server_pid(processes, NAME) == pid
    [running] = asyncio.run(ctx.projects())  # what the hello reports
    assert (running.name, running.containers[0].container_id) == (NAME, f"pid {pid}")
    assert run_task(ctx, stop_request()).status == CHANGED
    until(lambda: not alive(pid))


def test_a_pid_reused_by_another_process_is_not_adopted_nor_killed(
    tmp_path: Path, state: Path
) -> None:
    processes = Processes(state)
    ctx = context(state, processes, environment(tmp_path))
    assert run_task(ctx, start_request(NAME, spec(tmp_path, free_port()))).status == CHANGED
    assert run_task(ctx, stop_request()).status == CHANGED
    stranger = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        record = processes.directory(NAME) / RECORD_FILE
        stat = read_stat(stranger.pid)
        assert stat is not None
        # The record names the stranger's pid, but another start time, or another boot.
        for start, boot in ((stat.start - 1, processes.boot), (stat.start, "another-boot")):
            record.write_text(f"{stranger.pid} {start} {boot}\n")
            assert not Processes(state).state(NAME).alive
            assert [c.state for c in asyncio.run(ctx.running(NAME)).containers] == ["exited"]
            assert run_task(ctx, stop_request()).status == CHANGED
            assert stranger.poll() is None  # still runs: not ours to kill
    finally:
        stranger.kill()
        stranger.wait()


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("gpu=/opt/x", "invalid --llama-env 'gpu=/opt/x': expected BACKEND=DIR with BACKEND one "
                       "of cuda, vulkan, rocm, cpu"),
        ("cpu=/nonexistent/llama", "--llama-env cpu=/nonexistent/llama: "
                                   "/nonexistent/llama/bin/python is missing"),
    ],
)  # fmt: skip
def test_a_bad_llama_env_stops_the_agent_with_one_line(
    tmp_path: Path, value: str, says: str
) -> None:
    root = Path(__file__).resolve().parents[2]
    path = os.pathsep.join([str(root / "proto"), str(root)])
    done = subprocess.run(
        [sys.executable, "-m", "agent", "--insecure", "--state-dir", str(tmp_path / "s"),
         "--config", "/dev/null", "--gpu-probe", "none", "--llama-env", value],
        capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": path},
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and says in done.stderr
