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


def health(address: str) -> bool:
    try:
        with grpc.insecure_channel(address) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=1
            )
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
    except grpc.RpcError:
        return False


def ready_count(stub: hub_pb2_grpc.HubStub) -> int:
    nodes = stub.ListNodes(hub_pb2.ListNodesRequest(), timeout=30).nodes
    return sum(node.status == types_pb2.NODE_STATUS_READY for node in nodes)


def start_hub(state_dir: Path, *options: str) -> tuple[subprocess.Popen[bytes], str]:
    """A plaintext (--insecure) hub on a free loopback port, serving: the benchmarks measure
    the link and the store, not TLS. The process and its address."""
    address = f"127.0.0.1:{free_port()}"
    hub = subprocess.Popen(
        [sys.executable, "-m", "hub", "--listen", address, "--state-dir", str(state_dir),
         "--log-level", "warning", "--insecure", *options], cwd=REPO,
    )  # fmt: skip
    wait(lambda: health(address), 30)
    return hub, address
