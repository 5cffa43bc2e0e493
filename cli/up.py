"""`hubctl up`: a hub and a local agent in the foreground, for one machine or a first try."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agent.credentials import AgentTls
from cli import credentials
from cli.errors import CliError
from gpufleet.enroll import EnrollError, join
from gpufleet.v1 import trust_pb2, trust_pb2_grpc

STOP_GRACE_S = 15.0
HUB_START_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class UpConfig:
    listen: str
    state_dir: Path
    name: str
    labels: str
    inventory: Path | None
    heartbeat_interval: float
    configs: Path | None = None


def hub_command(config: UpConfig) -> list[str]:
    configs = ["--configs", str(config.configs)] if config.configs else []
    return [
        sys.executable,
        "-m",
        "hub",
        "--listen",
        config.listen,
        "--state-dir",
        str(config.state_dir / "hub"),
        "--heartbeat-interval",
        str(config.heartbeat_interval),
        *configs,
    ]


def agent_command(config: UpConfig) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "agent",
        "--hub",
        config.listen,
        "--name",
        config.name,
        "--state-dir",
        str(config.state_dir / "agent"),
    ]
    if config.labels:
        command += ["--labels", config.labels]
    if config.inventory is not None:
        command += ["--inventory", str(config.inventory)]
    return command


def wait_serving(config: UpConfig, hub: subprocess.Popen[bytes], timeout: float) -> None:
    """Until the hub answers health checks on its main port, as this host's admin."""
    deadline = time.monotonic() + timeout
    pki = config.state_dir / "hub" / "pki"
    while not (pki / "admin.crt").exists():
        if hub.poll() is not None:
            raise CliError(f"the hub exited with status {hub.returncode} (see above)")
        if time.monotonic() > deadline:
            raise CliError(f"the hub did not set up {pki} within {timeout:g} s")
        time.sleep(0.1)
    credentials.remember(config.listen, admin_profile(config))
    with credentials.channel(config.listen, []) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if hub.poll() is not None:
                raise CliError(f"the hub exited with status {hub.returncode} (see above)")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise CliError(f"the hub did not start serving on {config.listen} within {timeout:g} s")


def admin_profile(config: UpConfig) -> credentials.Profile:
    """The hub's bootstrap admin credential: hubctl on this host uses it from now on."""
    pki = config.state_dir / "hub" / "pki"
    return credentials.Profile(
        ca=str(pki / "ca.crt"), cert=str(pki / "admin.crt"), key=str(pki / "admin.key"),
        identity="user/admin",
    )  # fmt: skip


def enroll_local_agent(config: UpConfig) -> None:
    """Join the local agent with a fresh token, unless it is enrolled already."""
    tls = AgentTls(config.state_dir / "agent")
    if tls.enrolled:
        return
    with credentials.channel(config.listen, []) as channel:
        request = trust_pb2.CreateTokenRequest(role=trust_pb2.ROLE_AGENT, ttl_seconds=300)
        try:
            reply = trust_pb2_grpc.TrustStub(channel).CreateToken(request, timeout=10)
        except grpc.RpcError as exc:
            details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
            raise CliError(f"cannot create a join token for the local agent: {details}") from None
    try:
        tls.save(join(config.listen, reply.token, config.name))
    except EnrollError as exc:
        raise CliError(f"the local agent could not join: {exc}") from None


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for process in processes:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run(config: UpConfig, announce: Callable[[UpConfig], None]) -> int:
    """Start hub, then agent; return when either exits or on SIGINT/SIGTERM."""
    stopping = False

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    processes: list[subprocess.Popen[bytes]] = []
    try:
        # Own process groups: a terminal's Ctrl-C reaches only us, and we stop them in order.
        hub = subprocess.Popen(hub_command(config), env=env, start_new_session=True)
        processes.append(hub)
        wait_serving(config, hub, HUB_START_TIMEOUT_S)
        enroll_local_agent(config)
        agent = subprocess.Popen(agent_command(config), env=env, start_new_session=True)
        processes.insert(0, agent)  # stop the agent first, then the hub
        announce(config)
        while not stopping:
            for process in processes:
                if process.poll() is not None:
                    name = "hub" if process is hub else "agent"
                    raise CliError(f"the {name} exited with status {process.returncode}")
            time.sleep(0.2)
        return 0
    finally:
        stop(processes)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
