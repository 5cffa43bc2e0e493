"""The OpenAI-compatible gateway of `hubctl up`: its command line, its join token (role
gateway, in its environment, only while STATE/gateway holds no credential), the check of
--gateway-listen, and the wait until it answers /healthz."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from typing import TYPE_CHECKING

from cli.demo import check_address
from cli.output import CliError

if TYPE_CHECKING:
    from cli.up import UpConfig

DEFAULT_LISTEN = "127.0.0.1:8080"


def command(config: UpConfig, listen: str) -> list[str]:
    """The gateway's command line; like the agent's, its token goes in its environment."""
    return [sys.executable, "-m", "gateway", "--hub", config.listen, "--name", config.name,
            "--state-dir", str(config.state_dir / "gateway"), "--listen", listen]  # fmt: skip


def environment(
    config: UpConfig, env: dict[str, str], join_token: Callable[[UpConfig, int, str], str]
) -> dict[str, str]:
    """The gateway's environment: a fresh token of role gateway only while it is not
    enrolled yet, as for the agent."""
    from gateway.enroll import GatewayTls
    from gpufleet.v1 import trust_pb2

    env = {k: v for k, v in env.items() if k != "GPUFLEET_JOIN_TOKEN"}
    if GatewayTls(config.state_dir / "gateway").enrolled:
        return env
    token = join_token(config, trust_pb2.ROLE_GATEWAY, config.name)
    return {**env, "GPUFLEET_JOIN_TOKEN": token}


def wait_serving(listen: str, gateway: subprocess.Popen[bytes], timeout: float) -> None:
    """Until the gateway answers /healthz (it enrolls with the hub first)."""
    deadline = time.monotonic() + timeout
    while True:
        if gateway.poll() is not None:
            raise CliError(f"the gateway exited with status {gateway.returncode} (see above)")
        try:
            with urllib.request.urlopen(f"http://{listen}/healthz", timeout=1) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise CliError(f"the gateway did not answer on {listen} within {timeout:g} s")
        time.sleep(0.2)


def check(config: UpConfig) -> None:
    """--gateway-listen before anything starts: one line and exit 2 if bad."""
    if config.gateway is None:
        return
    check_address("--gateway-listen", config.gateway, DEFAULT_LISTEN)
    for option, taken in (("--listen", config.listen), ("--http", config.http)):
        if config.gateway == taken:
            raise CliError(f"--gateway-listen {config.gateway} is the {option} address: choose "
                           "another port, or --no-gateway", exit_code=2)  # fmt: skip
