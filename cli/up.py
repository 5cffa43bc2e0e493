"""`hubctl up`: a hub, a local agent and the OpenAI-compatible gateway in the foreground, for
one machine or a first try.

The agent runs as its own process, `gpufleet-agent --token T`: it joins with the token on
its first start and ignores it once its state dir holds a certificate. The gateway
(`gpufleet-gateway`, on --gateway-listen, API keys required; `--no-gateway` leaves it out)
joins the same way with a token of role gateway, its state in STATE/gateway. `--demo` runs
the demo (`cli.demo`): demo configurations, a simulated GPU host, a locally built image.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from cli import demo, up_gateway
from cli.output import CliError, console

if TYPE_CHECKING:
    from cli.credentials import Profile

STOP_GRACE_S = 15.0
HUB_START_TIMEOUT_S = 30.0
TOKEN_TTL_S = 300
GATEWAY_START_TIMEOUT_S = 30.0


DEFAULT_NAME = socket.gethostname().split(".")[0]


class GpuRuntime(StrEnum):
    cdi = "cdi"
    amd = "amd"
    none = "none"


class GpuProbe(StrEnum):
    auto = "auto"
    nvml = "nvml"
    amd = "amd"
    static = "static"
    none = "none"


@dataclass(frozen=True)
class UpConfig:
    listen: str
    state_dir: Path
    name: str
    labels: str
    inventory: Path | None
    heartbeat_interval: float
    configs: Path | None = None
    gpu_runtime: str | None = None  # None: the agent's default
    gpu_probe: str | None = None
    env: tuple[str, ...] = ()
    http: str | None = None
    demo: bool = False
    gateway: str | None = up_gateway.DEFAULT_LISTEN  # where the gateway listens; None: no gateway


def hub_command(config: UpConfig) -> list[str]:
    command = [sys.executable, "-m", "hub", "--listen", config.listen,
               "--state-dir", str(config.state_dir / "hub"),
               "--heartbeat-interval", str(config.heartbeat_interval)]  # fmt: skip
    if config.configs:
        command += ["--configs", str(config.configs)]
    if config.http:
        command += ["--http", config.http]
    return command


def agent_command(config: UpConfig) -> list[str]:
    """The local agent's command line; its join token goes in its environment, not here
    (`agent_env`), so it never shows in `ps`."""
    command = [sys.executable, "-m", "agent", "--hub", config.listen, "--name", config.name,
               "--state-dir", str(config.state_dir / "agent")]  # fmt: skip
    if config.labels:
        command += ["--labels", config.labels]
    if config.inventory is not None:
        command += ["--inventory", str(config.inventory)]
    if config.gpu_probe is not None:
        command += ["--gpu-probe", config.gpu_probe]
    if config.gpu_runtime is not None:
        command += ["--gpu-runtime", config.gpu_runtime]
    for item in config.env:
        command += ["--env", item]
    return command


def agent_env(config: UpConfig, env: dict[str, str]) -> dict[str, str]:
    """The agent's environment: with a fresh join token only while it is not enrolled yet
    (an enrolled agent ignores tokens, and an unspent token is not left lying about)."""
    from agent.credentials import AgentTls

    env = {k: v for k, v in env.items() if k != "GPUFLEET_JOIN_TOKEN"}
    if AgentTls(config.state_dir / "agent").enrolled:
        return env
    return {**env, "GPUFLEET_JOIN_TOKEN": join_token(config)}


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


def join_token(config: UpConfig, role: int | None = None, name: str = "") -> str:
    """A short-lived join token from the hub's Trust API, as its admin: for the local agent,
    or with `role` ROLE_GATEWAY and `name` for the gateway."""
    from cli.client import HubClient
    from gpufleet.v1 import trust_pb2, trust_pb2_grpc

    role = trust_pb2.ROLE_AGENT if role is None else role
    who = "the gateway" if role == trust_pb2.ROLE_GATEWAY else "the local agent"
    client = HubClient(config.listen)
    request = trust_pb2.CreateTokenRequest(role=role, ttl_seconds=TOKEN_TTL_S, name=name)  # type: ignore[arg-type]
    try:
        reply = client.call(trust_pb2_grpc.TrustStub(client.channel).CreateToken, request)
    except CliError as exc:
        raise CliError(f"cannot create a join token for {who}: {exc}") from None
    finally:
        client.close()
    token: str = reply.token
    return token


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """One after the other (the gateway, the agent, then the hub), each killed if it outlives
    its grace."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def demo_preflight(config: UpConfig) -> None:
    """The demo is about running containers: what the agent's podman preflight finds here
    would fail its first switch, so say it now (each problem with its fix) and start nothing."""
    from agent.preflight import Setup, SystemHost, checks

    problems = checks(SystemHost(os.environ), Setup(gpu_runtime=config.gpu_runtime or "cdi"))
    if problems:
        for problem in problems:
            print(f"podman preflight: {problem}", file=sys.stderr)
        count = f"{len(problems)} problem{'' if len(problems) == 1 else 's'}"
        raise CliError(f"cannot run the demo: podman preflight found {count} (above); fix them")


def run(config: UpConfig) -> None:
    """Start hub, agent, then gateway; return when one exits or on SIGINT/SIGTERM."""
    from cli.credentials import config_path

    if config.demo:
        from cli import demo_image

        try:
            demo_image.ensure_image(say=lambda line: console().print(line, markup=False))
        except demo_image.DemoUnavailable as exc:
            raise CliError(f"cannot run the demo: {exc}") from None
        demo_preflight(config)
    stopping = False

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    processes: list[subprocess.Popen[bytes]] = []
    names: dict[int, str] = {}
    try:
        # Own process groups: a terminal's Ctrl-C reaches only us, and we stop them in order.
        hub = subprocess.Popen(hub_command(config), env=env, start_new_session=True)
        processes.append(hub)
        names[hub.pid] = "hub"
        wait_serving(config, hub, HUB_START_TIMEOUT_S)
        agent = subprocess.Popen(agent_command(config), env=agent_env(config, env),
                                 start_new_session=True)  # fmt: skip
        processes.insert(0, agent)  # stop the agent first, then the hub
        names[agent.pid] = "agent"
        gateway_said = ""
        if config.gateway is not None:
            gateway = subprocess.Popen(
                up_gateway.command(config, config.gateway),
                env=up_gateway.environment(config, env, join_token), start_new_session=True,
            )  # fmt: skip
            processes.insert(0, gateway)  # and the gateway before both
            names[gateway.pid] = "gateway"
            up_gateway.wait_serving(config.gateway, gateway, GATEWAY_START_TIMEOUT_S)
            gateway_said = (f", OpenAI-compatible gateway on http://{config.gateway}/v1 (API "
                            "keys: hubctl keys create --name NAME)")  # fmt: skip
        metrics = f", metrics on http://{config.http}/metrics" if config.http else ""
        console().print(
            f"[bold green]gpufleet is up:[/] hub on {config.listen}{metrics} (state in "
            f"{config.state_dir}), local agent '{config.name}'{gateway_said}, mutual TLS; "
            f"hubctl is this hub's admin ({config_path()}). {demo.banner_hint(config)} "
            "Ctrl-C stops them all."
        )
        while not stopping:
            for process in processes:
                if process.poll() is not None:
                    name = names[process.pid]
                    raise CliError(f"the {name} exited with status {process.returncode}")
            time.sleep(0.2)
    finally:
        stop(processes)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def up(
    listen: Annotated[str, typer.Option(help="Hub address.")] = "127.0.0.1:7443",
    state_dir: Annotated[
        Path | None,
        typer.Option(
            help="Hub and agent state (default ~/.local/state/gpufleet, "
            "gpufleet-demo with --demo).",
            show_default=False,
        ),
    ] = None,
    name: Annotated[str, typer.Option(help="Local node name.")] = DEFAULT_NAME,
    labels: Annotated[str, typer.Option(help="Local node labels, k=v[,k=v].")] = "",
    inventory: Annotated[Path | None, typer.Option(help="Static GPU inventory file.")] = None,
    heartbeat_interval: Annotated[float, typer.Option(min=0.1)] = 5.0,
    configs: Annotated[
        Path | None, typer.Option(help="Configurations directory (default: the hub's).")
    ] = None,
    gpu_runtime: Annotated[
        GpuRuntime | None,
        typer.Option(
            help="How containers get GPUs (agent default cdi; none with --demo).",
            show_default=False,
        ),
    ] = None,
    gpu_probe: Annotated[
        GpuProbe | None,
        typer.Option(
            help="How the agent finds GPUs (default auto; static with --inventory).",
            show_default=False,
        ),
    ] = None,
    env: Annotated[
        list[str] | None,
        typer.Option(
            "--env",
            metavar="KEY=VALUE",
            show_default=False,
            help="A variable for compose files and health URLs (repeatable).",
        ),
    ] = None,
    http: Annotated[
        str | None,
        typer.Option(metavar="HOST:PORT", help="Serve the hub's /metrics and /healthz here."),
    ] = None,
    gateway_listen: Annotated[
        str,
        typer.Option(metavar="HOST:PORT", help="The OpenAI-compatible gateway's address."),
    ] = up_gateway.DEFAULT_LISTEN,
    no_gateway: Annotated[
        bool, typer.Option("--no-gateway", help="Leave the gateway out.")
    ] = False,
    run_demo: Annotated[
        bool,
        typer.Option(
            "--demo",
            help="Demo configurations on a simulated A5500 + A400 host, "
            "real containers, no GPU needed (builds its image once).",
        ),
    ] = False,
) -> None:
    """Run a hub, a local agent and the OpenAI-compatible gateway in the foreground (SQLite);
    Ctrl-C stops them all."""
    config = UpConfig(
        listen, state_dir or demo.state_dir(run_demo), name, labels, inventory,
        heartbeat_interval, configs, gpu_runtime.value if gpu_runtime else None,
        gpu_probe.value if gpu_probe else None, tuple(env or ()), http, run_demo,
        None if no_gateway else gateway_listen,
    )  # fmt: skip
    if run_demo:
        config = demo.with_demo(config)
    demo.check(config)
    up_gateway.check(config)
    run(config)
