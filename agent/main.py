"""gpufleet-agent: the command line of the node daemon.

gpufleet-agent [--hub HOST:PORT --name NAME ...]   run the agent
gpufleet-agent probe [--json]                      print what the GPU probe sees, exit
gpufleet-agent join --hub HOST:PORT --token-file F enroll this host once (mutual TLS after)
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import os
import signal
import socket
import sys
from pathlib import Path

import gpufleet
from agent import join, preflight, report
from agent.cache.sources import HubSource
from agent.cache.space import parse_size
from agent.cache.store import ModelCache
from agent.compose import Podman, run_process
from agent.credentials import AgentTls, NotEnrolled
from agent.envs.build import Builder
from agent.envs.preflight import SystemHost
from agent.envs.store import EnvStore
from agent.envs.wheels import GrpcWheels
from agent.groups import Ledger
from agent.health import HealthMonitor
from agent.identity import agent_id, check_name, parse_address, parse_labels
from agent.join import fail
from agent.link import AgentLink, Identity, insecure_channel
from agent.policyopts import add_policy_options, build_policy
from agent.probes import PROBES, GpuInfo, GpuProbe, InventoryError, ProbeResult, make_probe
from agent.processes import Processes
from agent.projects import RUNTIMES, ProjectStore
from agent.statelock import StateDirBusy, lock_state_dir
from agent.tasks.apply_assignment import ApplyAssignment
from agent.tasks.build_env import BuildEnv
from agent.tasks.context import TaskContext
from agent.tasks.drain import Drain
from agent.tasks.fetch_model import FetchModel
from agent.tasks.gather_facts import GatherFacts
from agent.tasks.remove_env import RemoveEnv
from agent.tasks.remove_model_cache import RemoveModelCache
from agent.tasks.runner import Registry, TaskRunner, registry
from agent.tasks.start_project import StartProject
from agent.tasks.stop_project import StopProject
from agent.tasks.tail_log import TailLog
from agent.tasks.wait_healthy import WaitHealthy
from gpufleet import sdnotify, settings
from gpufleet.channel import SETTINGS
from gpufleet.process import ENVIRONMENTS

log = logging.getLogger("agent")


def task_kinds(cache: ModelCache | None = None) -> Registry:
    """Every task kind this agent runs: one line each. `cache`: the model cache (None:
    STATE_DIR/models, fetching through no hub)."""
    return registry(
        GatherFacts(),
        StartProject(),
        StopProject(),
        WaitHealthy(),
        Drain(),
        ApplyAssignment(),
        TailLog(),
        BuildEnv(),
        RemoveEnv(),
        FetchModel(cache),
        RemoveModelCache(cache),
    )


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
        "--hub", metavar="HOST:PORT",
        help="hub to dial (default the hub this state dir joined, else $GPUFLEET_HUB, else "
        "localhost:7443)",
    )  # fmt: skip
    add_enroll_options(parser)
    join.add_token_options(parser, "join with this token first if the host is not enrolled yet")
    parser.add_argument(
        "--insecure", action="store_true",
        help="plaintext, no certificate: only for a hub started with --insecure",
    )  # fmt: skip
    parser.add_argument("--labels", default="", metavar="K=V[,K=V]", help="e.g. role=chat,zone=a")
    parser.add_argument(
        "--advertise-address", default="", metavar="HOST",
        help="where the rest of the cluster (the gateway) reaches this host's model servers: a "
        "host name or IP address (default: this host's name)",
    )  # fmt: skip
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
    parser.add_argument(
        "--llama-env", action="append", default=[], metavar="BACKEND=DIR",
        help="the llama-cpp-python environment (a venv or prefix with "
        "llama-cpp-python[server]) that llama.cpp model servers of BACKEND "
        f"({', '.join(ENVIRONMENTS)}) run from as DIR/bin/python (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--model-cache", type=Path, metavar="DIR",
        help="where registry entries are cached for the engines (default STATE_DIR/models)",
    )  # fmt: skip
    parser.add_argument(
        "--cache-reserve", default="1G", metavar="SIZE",
        help="free space a model fetch leaves on the cache's filesystem, e.g. 1G, 500M "
        "(default 1G)",
    )  # fmt: skip
    add_probe_options(parser)
    add_policy_options(parser)
    return parser


def add_enroll_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--name",
        help="node name (default: the enrolled name, else the short host name)",
    )
    parser.add_argument("--state-dir", type=Path, default=default_state_dir(), metavar="DIR")
    parser.add_argument(
        "--enroll-port", type=int, metavar="PORT",
        help="the hub's enrollment port (default: the --hub port + 1)",
    )  # fmt: skip


def join_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpufleet-agent join",
        description="Enroll this host with a one-time token from `hubctl tokens create`. "
        f"The token: --token-file, else --token, else ${join.TOKEN_ENV}.",
    )
    parser.add_argument(
        "--hub", metavar="HOST:PORT",
        help="the hub (default $GPUFLEET_HUB or localhost:7443); remembered in the state dir",
    )  # fmt: skip
    join.add_token_options(parser, "the join token")
    add_enroll_options(parser)
    return parser


def join_command(argv: list[str]) -> None:
    run_keys = tuple(settings.options(run_parser()))
    join.join_command(
        settings.parse_args(join_parser(), argv, settings.AGENT_CONFIG, accept=run_keys)
    )


def node_name(args: argparse.Namespace, tls: AgentTls) -> str:
    """The certified name wins; a different --name is a mistake worth stopping for."""
    if args.insecure:
        return str(args.name or socket.gethostname().split(".")[0])
    if not tls.enrolled:
        token = join.read_token(args)
        if token is None:
            fail(
                "this host is not enrolled: run `gpufleet-agent join --hub HUB --token-file "
                "PATH` with a token from `hubctl tokens create` (or pass --token-file, "
                f"${join.TOKEN_ENV} or --token here), or --insecure for a plaintext "
                "development hub"
            )
        return join.enroll(args, tls, token)
    try:
        name = tls.node_name()
    except NotEnrolled as exc:
        fail(str(exc))
    if args.name and args.name != name:
        fail(f"--name {args.name} differs from the enrolled name {name}: drop --name")
    return name


def probe_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpufleet-agent probe",
        description="Print the GPUs this host's probe sees, without a hub, and exit.",
    )
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    parser.add_argument(
        "--gpu-runtime", default="cdi", choices=RUNTIMES,
        help="how containers get GPUs, as the agent runs them (the preflight checks for it)",
    )  # fmt: skip
    add_probe_options(parser)
    return parser


def build_probe(args: argparse.Namespace) -> GpuProbe:
    try:
        return make_probe(args.gpu_probe, args.inventory, args.sysfs_root)
    except (ValueError, InventoryError) as exc:
        fail(str(exc))


def probe(argv: list[str]) -> None:
    # Reads the daemon's config file too (its probe settings), ignoring the daemon's other keys.
    run_keys = tuple(settings.options(run_parser()))
    args = settings.parse_args(probe_parser(), argv, settings.AGENT_CONFIG, accept=run_keys)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    found = build_probe(args).inventory()
    setup = preflight.Setup(args.gpu_runtime, has_nvidia(found))
    problems = preflight.checks(preflight.SystemHost(os.environ), setup)
    if args.json:
        print(json.dumps(report.as_json(found, problems), indent=2))
    else:
        print(report.as_text(found, problems))


async def serve(link: AgentLink, tls: AgentTls | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    notify = sdnotify.Notifier.from_environment()
    link.on_attempt = lambda connected: notify.ready(
        f"connected to hub {link.hub}" if connected else f"cannot reach hub {link.hub}; retrying"
    )
    async with notify.serving(stop):
        renewal = None
        if tls is not None:
            renewal = asyncio.create_task(tls.keep_renewed(link.channel, stop), name="renew")
        await link.run(stop)
        if renewal is not None:
            await renewal
    log.info("agent stopped")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["probe"]:
        probe(argv[1:])
        return
    if argv[:1] == ["join"]:
        join_command(argv[1:])
        return
    args = settings.parse_args(run_parser(), argv, settings.AGENT_CONFIG)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Every input is checked before enrolling: a bad flag must not spend a join token.
    try:
        labels = parse_labels(args.labels)
        if args.name:
            check_name(args.name)
        lock = lock_state_dir(args.state_dir)  # held until the process exits
        instance = agent_id(args.state_dir)
    except (ValueError, StateDirBusy) as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"state dir {args.state_dir}: {exc.strerror}: choose a writable --state-dir")
    args.hub = join.resolve_hub(args.hub, args.state_dir)
    cache_root, reserve = cache_settings(args)
    # The agent's own variables (${GPUFLEET_MODEL_CACHE}) win over --env.
    env = {**parse_env(args.env), **ModelCache(cache_root).variables()}
    llama_envs = parse_llama_envs(args.llama_env)
    policy = build_policy(args, argv, cache_root)
    gpus = build_probe(args)
    tls = AgentTls(args.state_dir)
    try:
        address = parse_address(args.advertise_address)
    except ValueError as exc:
        fail(str(exc))
    identity = Identity(node_name(args, tls), instance, labels, advertise_address=address)
    store = ProjectStore(args.state_dir, args.gpu_runtime, policy, {**os.environ, **env})
    ledger = Ledger(args.state_dir)
    ledger.reap()  # what a previous agent on this state dir left running; ours now (the lock)
    podman = Podman(identity.name, env, run=functools.partial(run_process, ledger=ledger))
    processes = Processes(args.state_dir, variables=ModelCache(cache_root).variables())
    adopt(processes)
    monitor = HealthMonitor(store, podman, {**os.environ, **env}, processes=processes)
    checks = preflight.for_host(podman.env, lambda: preflight.Setup(
        args.gpu_runtime, has_nvidia(link.last_probe)))  # fmt: skip
    channel = (insecure_channel(args.hub) if args.insecure
               else tls.channel_factory(args.hub, SETTINGS.client_options()))  # fmt: skip
    envs = EnvStore(args.state_dir)
    envs.recover()  # a build an earlier agent left unfinished failed
    cache = ModelCache(cache_root, reserve, hub=HubSource(channel))
    cache.recover()  # a fetch an earlier agent left unfinished is partial
    builder = Builder(envs, SystemHost(podman.env), GrpcWheels(channel),
                      functools.partial(gpus_of, gpus), podman.env, identity.name)  # fmt: skip
    context = TaskContext.create(store, podman, gpus, env, monitor, checks, processes,
                                 llama_envs, envs, builder, identity.name)  # fmt: skip
    link = AgentLink(args.hub, identity, gpus, channel=channel, monitor=monitor,
                     tasks=TaskRunner(task_kinds(cache), context), preflight=checks,
                     envs=envs, processes=processes, caches=cache,
                     llama_env_backends=sorted(llama_envs))  # fmt: skip
    try:
        asyncio.run(serve(link, None if args.insecure else tls))
    finally:
        processes.launcher.close()  # the standby supervisor exits; servers keep running
        lock.release()


async def gpus_of(probe: GpuProbe) -> tuple[GpuInfo, ...]:
    """The GPUs a build targets (CUDA architectures, gfx targets), probed now."""
    return tuple((await asyncio.to_thread(probe.inventory)).gpus)


def has_nvidia(found: ProbeResult | None) -> bool:
    return found is not None and any(gpu.vendor == "nvidia" for gpu in found.gpus)


def adopt(processes: Processes) -> None:
    """Host processes a previous agent started keep running: this agent watches them now."""
    for name in processes.known():
        found = processes.state(name)
        if found.alive:
            log.info("host process %s %s: adopted, not restarted", name, found.describe())


def parse_llama_envs(items: list[str]) -> dict[str, Path]:
    """--llama-env BACKEND=DIR: each DIR must hold bin/python."""
    found = {}
    for item in items:
        backend, sep, directory = item.partition("=")
        if not sep or backend not in ENVIRONMENTS or not directory:
            fail(f"invalid --llama-env {item!r}: expected BACKEND=DIR with BACKEND one of "
                 f"{', '.join(ENVIRONMENTS)}, e.g. --llama-env cuda=/opt/llama-cuda")  # fmt: skip
        python = Path(directory).absolute() / "bin" / "python"
        if not os.access(python, os.X_OK):
            fail(f"--llama-env {backend}={directory}: {python} is missing: give a venv or "
                 "prefix with llama-cpp-python[server] installed")  # fmt: skip
        found[backend] = python.parent.parent
    return found


def cache_settings(args: argparse.Namespace) -> tuple[Path, int]:
    """--model-cache (default STATE_DIR/models, made absolute) and --cache-reserve in bytes."""
    root = (args.model_cache or args.state_dir / "models").absolute()
    try:
        reserve = parse_size(str(args.cache_reserve))
    except ValueError as exc:
        fail(f"--cache-reserve: {exc}")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"model cache {root}: {exc.strerror}: choose a writable --model-cache")
    return root, reserve


def parse_env(items: list[str]) -> dict[str, str]:
    env = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            fail(f"invalid --env {item!r}: expected KEY=VALUE, e.g. --env LLM_PORT=8001")
        env[key] = value
    return env
