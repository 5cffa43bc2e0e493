"""What the benchmarks share: ports, process figures, and a hub to measure against."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gpufleet.tls import TLS_OPTIONS
from gpufleet.v1 import hub_pb2, hub_pb2_grpc, types_pb2

REPO = Path(__file__).resolve().parents[1]
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def proc_stats(pid: int) -> tuple[int, float]:
    """(resident KiB, CPU seconds used so far) of a process."""
    rss_kib = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kib = int(line.split()[1])
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return rss_kib, (int(fields[11]) + int(fields[12])) / TICKS


def wait(check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up after {timeout:g} s")
        time.sleep(0.5)


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


def start_hub(
    state_dir: Path, *options: str, secure: bool = False
) -> tuple[subprocess.Popen[bytes], str]:
    """A hub on a free loopback port, serving; the process and its address. Plaintext
    (--insecure) unless `secure`: most benchmarks measure the link and the store, not TLS.
    A secure hub's enrollment port is the main port + 1."""
    port = free_port()
    while secure and not port_free(port + 1):
        port = free_port()
    address = f"127.0.0.1:{port}"
    mode = [] if secure else ["--insecure"]
    hub = subprocess.Popen(
        [sys.executable, "-m", "hub", "--listen", address, "--state-dir", str(state_dir),
         "--log-level", "warning", *mode, *options], cwd=REPO,
    )  # fmt: skip
    if secure:
        wait(lambda: (state_dir / "pki" / "admin.crt").exists(), 30)
    wait(lambda: health(address, admin_credentials(state_dir) if secure else None), 30)
    return hub, address


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def admin_credentials(state_dir: Path) -> grpc.ChannelCredentials:
    pki = state_dir / "pki"
    return grpc.ssl_channel_credentials(
        *((pki / name).read_bytes() for name in ("ca.crt", "admin.key", "admin.crt"))
    )


def channel(address: str, credentials: grpc.ChannelCredentials | None) -> grpc.Channel:
    if credentials is None:
        return grpc.insecure_channel(address)
    return grpc.secure_channel(address, credentials, options=TLS_OPTIONS)
