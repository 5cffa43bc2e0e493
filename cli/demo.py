"""`hubctl up --demo`: what the demo changes in `hubctl up`, and the checks of up's options.

The demo runs the hub on the demo configurations (`configs/demo/`, beside the configurations
the hub reads by default) and the local agent on a static inventory of the multi-GPU design's
reference host (`configs/inventories/demo-a5500-a400.yaml`: RTX A5500 24 GB + RTX A400 4 GB)
with `--gpu-runtime none`, so no GPU device is passed to its containers. Its services are the
demo image that `cli.demo_image` builds locally. Everything here is pure; `cli.up` runs it.
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from cli.output import CliError

if TYPE_CHECKING:
    from cli.up import UpConfig

CONFIGS = Path(__file__).resolve().parent.parent / "configs"  # the hub's default, hub.server
DEMO_CONFIGS = CONFIGS / "demo"
DEMO_INVENTORY = CONFIGS / "inventories" / "demo-a5500-a400.yaml"
ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_ADDRESS = 261


def state_dir(demo: bool) -> Path:
    """`~/.local/state/gpufleet` (XDG_STATE_HOME), or `gpufleet-demo` beside it for the
    demo, which then leaves a real setup's hub and agent state alone."""
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / ("gpufleet-demo" if demo else "gpufleet")


def with_demo(config: UpConfig) -> UpConfig:
    """The demo's defaults for whatever the user did not give."""
    static = config.gpu_probe in (None, "static")
    return replace(
        config,
        configs=config.configs or DEMO_CONFIGS,
        inventory=config.inventory or (DEMO_INVENTORY if static else None),
        gpu_runtime=config.gpu_runtime or "none",
    )


def check_address(option: str, address: str, example: str) -> None:
    host, sep, port = address.rpartition(":")
    if (
        len(address) > MAX_ADDRESS
        or not sep
        or not host.strip("[]")
        or not port.isdigit()
        or not 0 < int(port) < 65536
        or any(c.isspace() for c in address)
    ):
        raise CliError(
            f"invalid {option} {address[:80]!r}: expected HOST:PORT with a port from 1 to "
            f"65535, e.g. {option} {example}",
            exit_code=2,
        )


def check_env(items: tuple[str, ...]) -> None:
    for item in items:
        key, sep, _ = item.partition("=")
        if not sep or not ENV_KEY.match(key):
            raise CliError(
                f"invalid --env {item[:80]!r}: expected KEY=VALUE with KEY a variable name, "
                "e.g. --env DEMO_LLM_PORT=18401",
                exit_code=2,
            )


def check(config: UpConfig) -> None:
    """Every option of `hubctl up` before anything starts: one line and exit 2 if bad."""
    check_address("--listen", config.listen, "127.0.0.1:7443")
    if config.http is not None:
        check_address("--http", config.http, "127.0.0.1:9464")
        if config.http == config.listen:
            raise CliError(f"--http {config.http} is the --listen address: choose another port",
                           exit_code=2)  # fmt: skip
    check_env(config.env)
    if config.inventory is not None:
        if config.gpu_probe not in (None, "static"):
            raise CliError(
                f"--inventory reports GPUs from a file, which --gpu-probe {config.gpu_probe} "
                "does not read: drop one of them",
                exit_code=2,
            )
        if not config.inventory.is_file():
            raise CliError(f"--inventory {config.inventory}: no such file", exit_code=2)
    elif config.gpu_probe == "static":
        raise CliError("--gpu-probe static needs --inventory FILE (see configs/inventories/)",
                       exit_code=2)  # fmt: skip
    if config.configs is not None and not config.configs.is_dir():
        raise CliError(f"--configs {config.configs}: no such directory", exit_code=2)


def banner_hint(config: UpConfig) -> str:
    """What to try next, for the banner `hubctl up` prints once it is up."""
    if config.configs != DEMO_CONFIGS:
        return (
            "In another terminal: [bold]hubctl nodes[/], [bold]hubctl gpus[/], "
            "[bold]hubctl tokens create[/] to enroll more hosts."
        )
    return (
        "Demo: a simulated RTX A5500 + RTX A400 host running real containers without GPUs. "
        f"In another terminal: [bold]hubctl configs[/], [bold]hubctl switch demo-chat "
        f"--node {config.name}[/], [bold]hubctl status[/] (the README's walk)."
    )
