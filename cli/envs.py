"""hubctl envs: llama-cpp-python environments per GPU backend on the nodes (issue 15): list
them, build one (an operation followed live, like `models switch`), read a build log, remove
one, and the cluster's wheel cache (one compile per cluster).

Cheap to import (typer only): gRPC, rich and the stubs load inside the commands.
"""

from __future__ import annotations

import re
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.output import (
    CliError,
    DetachOption,
    JsonOption,
    NodeOption,
    SelectorOption,
    console,
    emit_json,
    group_json,
    node_names,
)
from cli.output import selector as checked_selector
from cli.switch import AllOption, targets
from gpufleet import envnames

if TYPE_CHECKING:
    from cli.client import HubClient

BACKENDS = envnames.BACKENDS  # the rules agents and the hub follow (gpufleet.envnames)
VERSION = envnames.VERSION
TARGET = re.compile(r"[0-9]{2,3}[a-z]?|gfx[0-9a-f]{3,5}")  # CUDA "86", "90a"; AMD "gfx1100"
KEY_PREFIX = re.compile(r"[0-9a-f]{8,64}")
MAX_LINES = 10_000

app = typer.Typer(
    help="llama-cpp-python environments per GPU backend: list, build, logs, rm, cache."
)
cache_app = typer.Typer(help="The cluster's wheel cache: wheels built once, installed by others.")
app.add_typer(cache_app, name="cache")

BackendOption = Annotated[
    str, typer.Option("--backend", metavar="BACKEND", help="cuda, vulkan, rocm or cpu.")
]
NameArg = Annotated[
    str, typer.Argument(help="An environment (vulkan-0.3.36) or a backend (vulkan: its newest).")
]


def backend_of(text: str, required: bool = True) -> str:
    """--backend checked here: one of the four, else one line naming them (exit 2)."""
    value = text.strip().lower()
    if not value and not required:
        return ""
    if value not in BACKENDS:
        shown = f"{text[:32]!r}" if text.strip() else "(empty)"
        raise CliError(f"--backend {shown} is not a backend: use {', '.join(BACKENDS)}", 2)
    return value


def version_of(text: str) -> str:
    value = text.strip()
    if value and not VERSION.fullmatch(value):
        raise CliError(
            f"--version {text[:40]!r} is not a llama-cpp-python version: e.g. 0.3.36", exit_code=2
        )
    return value


def env_name(text: str) -> str:
    """An environment name or a backend: 'vulkan-0.3.36' or 'vulkan' (any case, as --backend)."""
    backend, dash, version = text.strip().partition("-")
    value = f"{backend.lower()}{dash}{version}"
    if not envnames.is_environment(value):
        raise CliError(
            f"{text[:40]!r} is not an environment: a backend ({', '.join(BACKENDS)}) or "
            "BACKEND-VERSION such as vulkan-0.3.36 (hubctl envs lists them)",
            exit_code=2,
        )
    return value


def target_list(items: list[str] | None) -> list[str]:
    found = [t.strip() for item in items or [] for t in item.split(",")]
    for target in found:
        if not TARGET.fullmatch(target):
            raise CliError(
                f"--target {target[:32]!r} is not a GPU target: a CUDA architecture (86, 90a) "
                "or an AMD gfx target (gfx1100)",
                exit_code=2,
            )
    return list(dict.fromkeys(found))


def connect(ctx: typer.Context) -> tuple[HubClient, Any]:
    """The hub client and an Envs stub over its channel."""
    from cli import client
    from gpufleet.v1 import envs_pb2_grpc

    hub = client.connect(ctx)
    return hub, envs_pb2_grpc.EnvsStub(hub.channel)


@app.callback(invoke_without_command=True)
def envs(
    ctx: typer.Context,
    node: NodeOption = None,
    labels: SelectorOption = None,
    backend: BackendOption = "",
    as_json: JsonOption = False,
) -> None:
    """Every node's environments: backend, version, state, verified GPU offload, size, when
    and from where it was built, the models that run from it."""
    group_json(ctx, as_json)
    if ctx.invoked_subcommand is not None:
        if node or labels or backend:
            raise CliError(
                f"--node, -l and --backend go after the subcommand: {ctx.command_path} "
                f"{ctx.invoked_subcommand} ...", exit_code=2
            )  # fmt: skip
        return
    from cli import envs_view
    from gpufleet.v1 import envs_pb2

    names, selector = node_names(node), checked_selector(labels)
    wanted = backend_of(backend, required=False)
    hub, stub = connect(ctx)
    request = envs_pb2.ListEnvsRequest(nodes=names, selector=selector, backend=wanted)
    found = [envs_view.env(e) for e in hub.call(stub.ListEnvs, request).envs]
    if as_json:
        emit_json(found)
    elif not found:
        console().print(envs_view.no_envs(names, selector, wanted))
    else:
        console().print(envs_view.envs_table(found))


@app.command("build")
def build(
    ctx: typer.Context,
    backend: BackendOption,
    node: NodeOption = None,
    labels: SelectorOption = None,
    every: AllOption = False,
    version: Annotated[str, typer.Option(
        "--version", metavar="VERSION",
        help="llama-cpp-python version (default: the agents').")] = "",
    target: Annotated[list[str] | None, typer.Option(
        "--target", metavar="TARGET", show_default=False,
        help="Also build for this CUDA architecture (86, 90a) or AMD gfx target (gfx1100); "
        "repeatable, or a,b.")] = None,
    no_cache: Annotated[bool, typer.Option(
        "--no-cache", help="Compile even when the wheel cache holds a compatible wheel.")] = False,
    check: Annotated[bool, typer.Option(
        "--check", help="Run the preflight only: say what would be done, build nothing.")] = False,
    detach: DetachOption = False,
    as_json: JsonOption = False,
) -> None:  # fmt: skip
    """Build an environment on nodes (or install it from the wheel cache), verified before
    use: an operation with live progress; `hubctl ops cancel ID` stops it and cleans up."""
    from cli.models_run import run
    from gpufleet.v1 import envs_pb2

    request = envs_pb2.BuildEnvRequest(
        backend=backend_of(backend), version=version_of(version),
        targets=targets(node_names(node), every, labels), extra_targets=target_list(target),
        no_cache=no_cache, check=check,
    )  # fmt: skip
    hub, stub = connect(ctx)
    run(hub, stub.BuildEnv, request, detach, as_json)


@app.command("logs")
def logs(
    ctx: typer.Context,
    name: NameArg,
    node: Annotated[str, typer.Option("--node", metavar="NODE", help="The node it is on.")],
    lines: Annotated[int, typer.Option(min=1, max=MAX_LINES, help="Lines from the end.")] = 100,
    as_json: JsonOption = False,
) -> None:
    """The last lines of an environment's build log on a node."""
    from gpufleet.v1 import envs_pb2

    wanted = env_name(name)
    if not node.strip() or "," in node:
        raise CliError("--node takes one node name, e.g. --node gpu-a", exit_code=2)
    hub, stub = connect(ctx)
    request = envs_pb2.EnvLogsRequest(name=wanted, node=node.strip(), lines=lines)
    reply = hub.call(stub.EnvLogs, request)
    if as_json:
        emit_json({"node": reply.node, "name": reply.name, "log": reply.log})
        return
    sys.stdout.write(reply.log if not reply.log or reply.log.endswith("\n") else reply.log + "\n")


@app.command("rm")
def remove(
    ctx: typer.Context,
    name: NameArg,
    node: NodeOption = None,
    labels: SelectorOption = None,
    every: AllOption = False,
    as_json: JsonOption = False,
) -> None:
    """Delete an environment (or every version of a backend) on nodes; refused while a
    model runs from it, naming the models."""
    from cli import envs_view
    from cli.models_run import unary
    from gpufleet.v1 import envs_pb2

    wanted = env_name(name)
    request = envs_pb2.RemoveEnvRequest(name=wanted, targets=targets(node_names(node), every,
                                                                     labels))  # fmt: skip
    hub, stub = connect(ctx)
    # In use: refused as a whole, one line per model (the last one the command's error).
    found = envs_view.removed(unary(hub, stub.RemoveEnv, request))
    if as_json:
        emit_json(found)
    else:
        for entry in found:
            console().print(envs_view.removal_line(entry, wanted))
    if not found:
        raise CliError(f"no node of those chosen has {wanted}: nothing removed")
    if not all(entry["ok"] for entry in found):
        raise typer.Exit(1)


@cache_app.callback(invoke_without_command=True)
def cache(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """The wheels the cache holds: key, backend, version, toolkit, GPU targets, CPU
    architecture, size, the node that built each, the nodes whose environments use it."""
    group_json(ctx, as_json)
    if ctx.invoked_subcommand is not None:
        return
    from cli import envs_view
    from gpufleet.v1 import envs_pb2

    hub, stub = connect(ctx)
    found = envs_view.cache(hub.call(stub.ListWheels, envs_pb2.ListWheelsRequest()))
    if as_json:
        emit_json(found)
        return
    if found["wheels"]:
        console().print(envs_view.wheels_table(found["wheels"]))
    console().print(envs_view.cache_total(found))


@cache_app.command("rm")
def cache_remove(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="A wheel's key, or its first 8+ characters.")],
    as_json: JsonOption = False,
) -> None:
    """Delete a cached wheel (environments installed from it stay)."""
    from cli import envs_view
    from gpufleet.envkey import describe
    from gpufleet.v1 import envs_pb2

    wanted = key.strip().lower()
    if not KEY_PREFIX.fullmatch(wanted):
        raise CliError(
            f"{key[:40]!r} is not a wheel key: give at least its first 8 hex characters "
            "(hubctl envs cache lists them)",
            exit_code=2,
        )
    hub, stub = connect(ctx)
    reply = hub.call(stub.RemoveWheel, envs_pb2.RemoveWheelRequest(key=wanted))
    found = envs_view.wheel_meta(reply.removed)
    if as_json:
        emit_json(found)
    else:
        print(f"removed wheel {found['key'][:12]} ({describe(found['parts'])})")
