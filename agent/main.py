"""gpufleet-agent: the command line of the node daemon.

gpufleet-agent [--hub HOST:PORT --name NAME ...]   run the agent
gpufleet-agent probe [--json]                      print what the GPU probe sees, exit
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import NoReturn

import gpufleet
from agent import report
from agent.compose import Podman
from agent.identity import agent_id, check_name, parse_labels
from agent.link import AgentLink, Identity
from agent.probes import PROBES, GpuProbe, InventoryError, make_probe
from agent.projects import RUNTIMES, ProjectStore
from agent.switching import Switching

log = logging.getLogger("agent")


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "gpufleet" / "agent"


def add_probe_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--gpu-probe",
        default="auto",
        choices=PROBES,
        help="how to find GPUs (default auto: NVML, then AMD sysfs)",
    )
    parser.add_argument(
        "--inventory",
        type=Path,
        metavar="FILE",
        help="static GPU inventory file (YAML); implies --gpu-probe static",
    )
    parser.add_argument(
        "--sysfs-root",
        type=Path,
        default=Path("/sys"),
        metavar="DIR",
        help="where the AMD probe reads sysfs (default /sys)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {gpufleet.__version__}")


def run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpufleet-agent",
        description="Run the gpufleet agent on this GPU host. "
        "`gpufleet-agent probe` prints what it sees and exits.",
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
    parser.add_argument("--state-dir", type=Path, default=default_state_dir(), metavar="DIR")
    parser.add_argument(
        "--gpu-runtime",
        default="cdi",
        choices=RUNTIMES,
        help="how containers get GPUs: cdi (NVIDIA CDI, default), amd "
        "(/dev/kfd, /dev/dri), none (visible-devices variables only)",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a variable for this host's compose projects and health URLs "
        "(repeatable), e.g. --env HF_HOME=/models",
    )
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    add_probe_options(parser)
    return parser


def probe_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpufleet-agent probe",
        description="Print the GPUs this host's probe sees, without a hub, and exit.",
    )
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    add_probe_options(parser)
    return parser


def fail(message: str) -> NoReturn:
    print(f"gpufleet-agent: {message}", file=sys.stderr)
    sys.exit(2)


def build_probe(args: argparse.Namespace) -> GpuProbe:
    try:
        return make_probe(args.gpu_probe, args.inventory, args.sysfs_root)
    except (ValueError, InventoryError) as exc:
        fail(str(exc))


def probe(argv: list[str]) -> None:
    args = probe_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    found = build_probe(args).inventory()
    print(json.dumps(report.as_json(found), indent=2) if args.json else report.as_text(found))


async def serve(link: AgentLink) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await link.run(stop)
    log.info("agent stopped")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["probe"]:
        probe(argv[1:])
        return
    args = run_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        identity = Identity(
            check_name(args.name), agent_id(args.state_dir), parse_labels(args.labels)
        )
    except ValueError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"state dir {args.state_dir}: {exc.strerror}: choose a writable --state-dir")
    env = parse_env(args.env)
    switching = Switching(
        ProjectStore(args.state_dir, args.gpu_runtime), Podman(identity.name, env), env
    )
    gpus = build_probe(args)
    asyncio.run(serve(AgentLink(args.hub, identity, gpus, switching=switching)))


def parse_env(items: list[str]) -> dict[str, str]:
    env = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            fail(f"invalid --env {item!r}: expected KEY=VALUE, e.g. --env LLM_PORT=8001")
        env[key] = value
    return env
