"""`hubctl up`: a hub and a local agent in the foreground, for one machine or a first try.

The agent runs as its own process, `gpufleet-agent --token T`: it joins with the token on
its first start and ignores it once its state dir holds a certificate.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from cli.output import CliError, console

if TYPE_CHECKING:
    from cli.credentials import Profile

STOP_GRACE_S = 15.0
HUB_START_TIMEOUT_S = 30.0
TOKEN_TTL_S = 300


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "gpufleet"


DEFAULT_STATE_DIR = default_state_dir()
DEFAULT_NAME = socket.gethostname().split(".")[0]


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
    return [sys.executable, "-m", "hub", "--listen", config.listen,
            "--state-dir", str(config.state_dir / "hub"),
            "--heartbeat-interval", str(config.heartbeat_interval), *configs]  # fmt: skip


def agent_command(config: UpConfig, token: str) -> list[str]:
    command = [sys.executable, "-m", "agent", "--hub", config.listen, "--name", config.name,
               "--state-dir", str(config.state_dir / "agent"), "--token", token]  # fmt: skip
    if config.labels:
        command += ["--labels", config.labels]
    if config.inventory is not None:
        command += ["--inventory", str(config.inventory)]
    return command


def admin_profile(config: UpConfig) -> Profile:
    """The hub's bootstrap admin credential: hubctl on this host uses it from now on."""
    from cli.credentials import Profile

    pki = config.state_dir / "hub" / "pki"
    return Profile(
        ca=str(pki / "ca.crt"), cert=str(pki / "admin.crt"), key=str(pki / "admin.key"),
        identity="user/admin",
    )  # fmt: skip


def wait_serving(config: UpConfig, hub: subprocess.Popen[bytes], timeout: float) -> None:
    """Until the hub answers health checks on its main port, as this host's admin; only
    then is hubctl's config pointed at it (a hub that fails to start changes nothing)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from cli import credentials
    from gpufleet.tls import TLS_OPTIONS

    deadline = time.monotonic() + timeout
    admin = admin_profile(config)
    pki = config.state_dir / "hub" / "pki"
    while not (pki / "admin.crt").exists():
        if hub.poll() is not None:
            raise CliError(f"the hub exited with status {hub.returncode} (see above)")
        if time.monotonic() > deadline:
            raise CliError(f"the hub did not set up {pki} within {timeout:g} s")
        time.sleep(0.1)
    files = [Path(path).read_bytes() for path in (admin.ca, admin.key, admin.cert)]
    tls = grpc.ssl_channel_credentials(*files)
    with grpc.secure_channel(config.listen, tls, options=TLS_OPTIONS) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if hub.poll() is not None:
                raise CliError(f"the hub exited with status {hub.returncode} (see above)")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
            except grpc.RpcError:
                reply = None
            serving = reply is not None and reply.status == health_pb2.HealthCheckResponse.SERVING
            # Still running after it answered: the answer came from our hub, not another one.
            if serving and hub.poll() is None:
                credentials.remember(config.listen, admin)
                return
            time.sleep(0.2)
    raise CliError(f"the hub did not start serving on {config.listen} within {timeout:g} s")


def join_token(config: UpConfig) -> str:
    """A short-lived agent token from the hub's Trust API, as its admin."""
    from cli.client import HubClient
    from gpufleet.v1 import trust_pb2, trust_pb2_grpc

    client = HubClient(config.listen)
    request = trust_pb2.CreateTokenRequest(role=trust_pb2.ROLE_AGENT, ttl_seconds=TOKEN_TTL_S)
    try:
        reply = client.call(trust_pb2_grpc.TrustStub(client.channel).CreateToken, request)
    except CliError as exc:
        raise CliError(f"cannot create a join token for the local agent: {exc}") from None
    finally:
        client.close()
    token: str = reply.token
    return token


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """One after the other (the agent, then the hub), each killed if it outlives its grace."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run(config: UpConfig) -> None:
    """Start hub, then agent; return when either exits or on SIGINT/SIGTERM."""
    from cli.credentials import config_path

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
        agent_argv = agent_command(config, join_token(config))
        agent = subprocess.Popen(agent_argv, env=env, start_new_session=True)
        processes.insert(0, agent)  # stop the agent first, then the hub
        console().print(
            f"[bold green]gpufleet is up:[/] hub on {config.listen} (state in "
            f"{config.state_dir}), local agent '{config.name}', mutual TLS; hubctl is this "
            f"hub's admin ({config_path()}). In another terminal: "
            "[bold]hubctl nodes[/], [bold]hubctl gpus[/], [bold]hubctl tokens create[/] to "
            "enroll more hosts. Ctrl-C stops both."
        )
        while not stopping:
            for process in processes:
                if process.poll() is not None:
                    name = "hub" if process is hub else "agent"
                    raise CliError(f"the {name} exited with status {process.returncode}")
            time.sleep(0.2)
    finally:
        stop(processes)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def up(
    listen: Annotated[str, typer.Option(help="Hub address.")] = "127.0.0.1:7443",
    state_dir: Annotated[Path, typer.Option(help="Hub and agent state.")] = DEFAULT_STATE_DIR,
    name: Annotated[str, typer.Option(help="Local node name.")] = DEFAULT_NAME,
    labels: Annotated[str, typer.Option(help="Local node labels, k=v[,k=v].")] = "",
    inventory: Annotated[Path | None, typer.Option(help="Static GPU inventory file.")] = None,
    heartbeat_interval: Annotated[float, typer.Option(min=0.1)] = 5.0,
    configs: Annotated[
        Path | None, typer.Option(help="Configurations directory (default: the hub's).")
    ] = None,
) -> None:
    """Run a hub and a local agent in the foreground (SQLite); Ctrl-C stops both."""
    run(UpConfig(listen, state_dir, name, labels, inventory, heartbeat_interval, configs))
