"""gpufleet-agent: the command line of the node daemon."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import NoReturn

import gpufleet
from agent.identity import agent_id, check_name, parse_labels
from agent.link import AgentLink, Identity
from agent.probes import GpuProbe, InventoryError, make_probe

log = logging.getLogger("agent")


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "gpufleet" / "agent"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="gpufleet-agent", description="Run the gpufleet agent on this GPU host."
    )
    parser.add_argument(
        "--hub",
        default=os.environ.get("GPUFLEET_HUB", "localhost:7443"),
        metavar="HOST:PORT",
        help="hub to dial (default $GPUFLEET_HUB or localhost:7443)",
    )
    parser.add_argument(
        "--name",
        default=socket.gethostname().split(".")[0],
        help="node name (default: the short host name)",
    )
    parser.add_argument("--labels", default="", metavar="K=V[,K=V]", help="e.g. role=chat,zone=a")
    parser.add_argument(
        "--inventory",
        type=Path,
        metavar="FILE",
        help="static GPU inventory file (YAML); without it no GPUs are reported",
    )
    parser.add_argument("--state-dir", type=Path, default=default_state_dir(), metavar="DIR")
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {gpufleet.__version__}")
    return parser.parse_args(argv)


async def run(link: AgentLink) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await link.run(stop)
    log.info("agent stopped")


def fail(message: str) -> NoReturn:
    print(f"gpufleet-agent: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        identity = Identity(
            check_name(args.name), agent_id(args.state_dir), parse_labels(args.labels)
        )
        probe: GpuProbe = make_probe(args.inventory)
    except (ValueError, InventoryError) as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"state dir {args.state_dir}: {exc.strerror}: choose a writable --state-dir")
    asyncio.run(run(AgentLink(args.hub, identity, probe)))
