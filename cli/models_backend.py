"""hubctl models switch-backend: run a llama.cpp model from another backend's environment
(issue 15). Instant where the environment is ready on the nodes; otherwise it is built first,
in the same operation, which is followed live like `models switch` (or only its id with
--detach). Cheap to import: gRPC, rich and the stubs load inside the command.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.output import (
    DetachOption,
    JsonOption,
    NodeOption,
    SelectorOption,
    console,
    detached,
    emit_json,
    node_names,
)
from cli.switch import AllOption, targets

if TYPE_CHECKING:
    from cli.client import HubClient


def final(hub: HubClient, operation_id: str) -> dict[str, Any]:
    """Wait for the operation's end, quietly (--json): the operation as it ended."""
    from cli import convert

    last = None
    for event in hub.watch(operation_id):
        if event.HasField("operation"):
            last = event.operation
    return convert.operation(last if last is not None else hub.operation(operation_id))


def switch_backend(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A llama.cpp model's name or alias.")],
    backend: Annotated[str, typer.Option(
        "--backend", metavar="BACKEND", help="cuda, vulkan, rocm or cpu.")],
    version: Annotated[str, typer.Option(
        "--version", metavar="VERSION",
        help="llama-cpp-python version (default: the newest ready one on each node).")] = "",
    node: NodeOption = None,
    labels: SelectorOption = None,
    every: AllOption = False,
    restart: Annotated[bool, typer.Option(
        help="Restart the model where it runs (--no-restart: its next start uses it).")] = True,
    force: Annotated[bool, typer.Option(
        help="Start it although the nodes' GPUs are too few or too small for it.")] = False,
    detach: DetachOption = False,
    as_json: JsonOption = False,
) -> None:  # fmt: skip
    """Run a llama.cpp model from another backend's environment: instant where it is ready
    and verified on the nodes, else built first; the model restarts from it (no nodes named:
    every node that runs it)."""
    from rich.text import Text

    from cli import envs_view
    from cli.envs import backend_of, version_of
    from cli.models import connect
    from cli.models_run import unary
    from cli.ops_view import follow
    from gpufleet.v1 import hub_pb2, models_pb2

    wanted = backend_of(backend)
    names = node_names(node)
    chosen = targets(names, every, labels) if names or every or labels else hub_pb2.Targets()
    request = models_pb2.SwitchBackendRequest(
        name=name, backend=wanted, version=version_of(version), targets=chosen,
        no_restart=not restart, force=force,
    )  # fmt: skip
    hub, stub = connect(ctx)
    found = envs_view.switched(unary(hub, stub.SwitchBackend, request))
    line = envs_view.switch_line(found, name, wanted, restart)
    operation_id = found["operation_id"]
    if as_json:
        if operation_id and not detach:
            found["operation"] = final(hub, operation_id)
        emit_json(found)
        if found.get("operation", {"status": "succeeded"})["status"] != "succeeded":
            raise typer.Exit(1)
        return
    if operation_id is None:
        console().print(Text(line))
        return
    if detach:
        print(line, file=sys.stderr)
        detached(operation_id, False)
        return
    console().print(Text(line))
    console().print(Text(f"operation {operation_id}"))
    follow(hub, operation_id, False)
