"""What the benchmarks share: ports, process figures, and a hub and agents to measure.

Every process a benchmark starts goes through here, so the hub's mode and the agent's flags
agree in one place: `start_hub` runs a plaintext (`--insecure`) hub unless asked for mutual
TLS, and `start_agent` dials it the same way. `wait` gives up at once, naming the process,
when one the benchmark depends on has exited, instead of polling out its whole timeout.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gpufleet.tls import TLS_OPTIONS
from gpufleet.v1 import hub_pb2, hub_pb2_grpc, types_pb2

if TYPE_CHECKING:
    from tests.support.postgres import PostgresServer

REPO = Path(__file__).resolve().parents[1]
TICKS = os.sysconf("SC_CLK_TCK")
LOG_TAIL = 3000
# Log files of processes started by `spawn`, by pid: `wait` shows their tail when one exits.
_logs: dict[int, Path] = {}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def proc_stats(pid: int) -> tuple[int, float]:
    """(resident KiB, CPU seconds used so far) of a process."""
    rss_kib = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kib = int(line.split()[1])
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return rss_kib, (int(fields[11]) + int(fields[12])) / TICKS


def wait(check: Callable[[], bool], timeout: float, *watched: subprocess.Popen[Any]) -> None:
    """Poll `check` every half second; give up after `timeout`, or as soon as one of the
    `watched` processes has exited (naming it, with the end of its log if it has one)."""
    deadline = time.monotonic() + timeout
    while not check():
        for process in watched:
            if process.poll() is not None:
                raise SystemExit(exited(process))
        if time.monotonic() > deadline:
            raise SystemExit("".join([f"gave up after {timeout:g} s", *map(log_end, watched)]))
        time.sleep(0.5)


def exited(process: subprocess.Popen[Any]) -> str:
    """What to say when `process` ended early: its name, code, and the end of its log."""
    argv = [str(arg) for arg in process.args] if isinstance(process.args, list) else []
    name = " ".join(["python", *argv[1:3]] if argv[:1] == [sys.executable] else argv[:2])
    return f"{name or process.pid} exited with code {process.returncode}{log_end(process)}"


def log_end(process: subprocess.Popen[Any]) -> str:
    log = _logs.get(process.pid)
    if log is None or not log.exists():
        return ""
    return f"; the end of {log}:\n{log.read_text(errors='replace')[-LOG_TAIL:]}"


def spawn(
    argv: list[str],
    log: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdin: int | None = None,
    stdout: int | None = None,
    nice: int = 0,
) -> subprocess.Popen[str]:
    """`python ARGV` from the repository root, text mode; stderr (and stdout unless piped)
    into `log` when given, else to this terminal; `nice` lowers its priority."""
    out = log.open("a") if log is not None else None
    # `nice -n`, not a preexec_fn: with one, Python forks instead of vforking, gRPC's fork
    # handler restarts its poller in the child, and the child, closing its descriptors before
    # exec, aborts on epoll_wait EBADF (grpc/grpc#43055) once this process has a channel.
    command = [sys.executable, *argv] if not nice else ["nice", "-n", str(nice), sys.executable,
                                                        *argv]  # fmt: skip
    try:
        process = subprocess.Popen(
            command, cwd=REPO, env=None if env is None else dict(env), stdin=stdin,
            stdout=out if stdout is None else stdout, stderr=out, text=True,
        )  # fmt: skip
    finally:
        if out is not None:
            out.close()
    if log is not None:
        _logs[process.pid] = log
    return process


def stop(*processes: subprocess.Popen[Any] | None, timeout: float = 30) -> None:
    """SIGTERM each process in turn and wait for it; SIGKILL one that outstays `timeout`."""
    for process in processes:
        if process is None or process.poll() is not None:
            continue
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def unwind_on_sigterm() -> None:
    """Make SIGTERM raise SystemExit, so `finally` blocks stop the daemons a benchmark
    started (a plain SIGTERM would end the benchmark and leave them running)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def health(address: str, credentials: grpc.ChannelCredentials | None = None) -> bool:
    try:
        with channel(address, credentials) as chan:
            reply = health_pb2_grpc.HealthStub(chan).Check(
                health_pb2.HealthCheckRequest(), timeout=1
            )
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
    except grpc.RpcError:
        return False


def ready_count(stub: hub_pb2_grpc.HubStub) -> int:
    nodes = stub.ListNodes(hub_pb2.ListNodesRequest(), timeout=30).nodes
    return sum(node.status == types_pb2.NODE_STATUS_READY for node in nodes)


def ready_nodes(stub: hub_pb2_grpc.HubStub, timeout: float = 60) -> int:
    """How many nodes the hub calls ready, over every page of ListNodes."""
    ready, token = 0, ""
    while True:
        page = stub.ListNodes(
            hub_pb2.ListNodesRequest(status=["ready"], page_token=token), timeout=timeout
        )
        ready += int(sum(node.status == types_pb2.NODE_STATUS_READY for node in page.nodes))
        token = str(page.next_page_token)
        if not token:
            return ready


def start_hub(
    state_dir: Path,
    *options: str,
    secure: bool = False,
    address: str | None = None,
    serving_within: float = 30.0,
) -> tuple[subprocess.Popen[bytes], str]:
    """A hub on a free loopback port (or `address`, to restart one), serving; the process
    and its address. Plaintext (--insecure) unless `secure`: most benchmarks measure the link
    and the store, not TLS; `start_agent` dials either. A secure hub's enrollment port is the
    main port + 1. From here on SIGTERM unwinds the benchmark (`unwind_on_sigterm`)."""
    unwind_on_sigterm()
    if address is None:
        port = free_port()
        while secure and not port_free(port + 1):
            port = free_port()
        address = f"127.0.0.1:{port}"
    mode = [] if secure else ["--insecure"]
    hub = subprocess.Popen(
        [sys.executable, "-m", "hub", "--listen", address, "--state-dir", str(state_dir),
         "--log-level", "warning", *mode, *options], cwd=REPO,
    )  # fmt: skip
    try:
        if secure:
            wait(lambda: (state_dir / "pki" / "admin.crt").exists(), 30, hub)
        credentials = admin_credentials(state_dir) if secure else None
        wait(lambda: health(address, credentials), serving_within, hub)
    except BaseException:
        stop(hub)
        raise
    return hub, address


def start_agent(
    address: str,
    name: str,
    state_dir: Path,
    *options: str,
    token: str | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """A real agent process dialing the hub at `address`: plaintext (--insecure) for the
    default hub of `start_hub`; with `token`, it joins a secure hub on its enrollment port
    (main port + 1, as `start_hub(secure=True)` picks it) and then runs over mutual TLS."""
    mode = ["--insecure"] if token is None else ["--token", token]
    return subprocess.Popen(
        [sys.executable, "-m", "agent", "--hub", address, "--name", name, "--state-dir",
         str(state_dir), "--log-level", "warning", *mode, *options],
        cwd=REPO, env=None if env is None else dict(env),
    )  # fmt: skip


def hub_stub(address: str) -> hub_pb2_grpc.HubStub:
    """The Hub API of a plaintext hub from `start_hub`."""
    return hub_pb2_grpc.HubStub(grpc.insecure_channel(address))


def admin_credentials(state_dir: Path) -> grpc.ChannelCredentials:
    pki = state_dir / "pki"
    return grpc.ssl_channel_credentials(
        *((pki / name).read_bytes() for name in ("ca.crt", "admin.key", "admin.crt"))
    )


def channel(address: str, credentials: grpc.ChannelCredentials | None) -> grpc.Channel:
    if credentials is None:
        return grpc.insecure_channel(address)
    return grpc.secure_channel(address, credentials, options=TLS_OPTIONS)


def postgres_url() -> tuple[str, PostgresServer]:
    """A throwaway PostgreSQL server's new database: its URL, and the server (to stop)."""
    from tests.support.postgres import PostgresMissing, PostgresServer

    try:
        server = PostgresServer.start()
    except PostgresMissing as exc:
        raise SystemExit(str(exc)) from None
    return server.create_database("gpufleet_bench"), server
