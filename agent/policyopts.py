"""The agent's compose policy options (gpufleet.policy): what compose content this host runs,
widened per host on the command line or in /etc/gpufleet/agent.yaml."""

from __future__ import annotations

import argparse
from pathlib import Path

from agent.join import fail
from gpufleet import settings
from gpufleet.policy import Policy


def add_policy_options(parser: argparse.ArgumentParser) -> None:
    """What compose content this host runs (gpufleet.policy): widen it per host."""
    group = parser.add_argument_group("compose policy (refused unless allowed here)")
    for flag, what in (
        ("--allow-privileged", "privileged containers, and with them every rule below but "
                               "bind roots"),
        ("--allow-ipc-host", "ipc: host (vLLM's tensor parallel workers share memory)"),
        ("--allow-network-host", "network_mode: host"),
        ("--allow-pid-host", "pid: host"),
    ):  # fmt: skip
        group.add_argument(flag, action="store_true", help=f"allow {what}")
    group.add_argument(
        "--allow-bind-roots", action="append", default=[], metavar="DIR",
        help="bind mounts (and build contexts, env files) under DIR, e.g. a model cache "
        "(repeatable)",
    )  # fmt: skip
    group.add_argument(
        "--allow-capabilities", action="append", default=[], metavar="CAP",
        help="cap_add of CAP, e.g. SYS_NICE (repeatable)",
    )  # fmt: skip
    group.add_argument(
        "--allow-devices", action="append", default=[], metavar="PATH",
        help="a device other than GPUs, e.g. /dev/infiniband/uverbs0 (repeatable)",
    )  # fmt: skip


def build_policy(args: argparse.Namespace, argv: list[str], model_cache: Path | None = None
                 ) -> Policy:  # fmt: skip
    """`model_cache`: the agent's cache root, which compose files may bind read-only."""
    roots = [Path(root) for root in args.allow_bind_roots]
    relative = [str(root) for root in roots if not root.is_absolute()]
    if relative:
        fail(f"allow_bind_roots: {relative[0]} is not an absolute path: give the full path")
    where = settings.chosen_file(argv, settings.AGENT_CONFIG) or settings.AGENT_CONFIG
    return Policy(
        allow_privileged=args.allow_privileged,
        allow_ipc_host=args.allow_ipc_host,
        allow_pid_host=args.allow_pid_host,
        allow_network_host=args.allow_network_host,
        allow_bind_roots=tuple(str(root) for root in roots),
        allow_capabilities=tuple(args.allow_capabilities),
        allow_devices=tuple(args.allow_devices),
        model_cache=str(model_cache) if model_cache is not None else "",
        config_file=str(where),
    )
