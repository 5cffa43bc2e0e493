"""hubctl models switch, stop, running and logs: models running on nodes.

A switch or stop is an operation, followed live as `hubctl switch` follows one (or only its
id with --detach); nodes are chosen as everywhere (--node, -l, --all). Cheap to import: gRPC,
rich and the stubs load inside the commands.
"""

from __future__ import annotations

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
    detached,
    emit_json,
    error_line,
    node_names,
)
from cli.output import selector as checked_selector
from cli.switch import AllOption, SerialOption, percent, targets

if TYPE_CHECKING:
    from cli.client import HubClient

NameArg = Annotated[str, typer.Argument(help="A model's name or alias.")]
MAX_LINES = 10_000


def gpu_list(text: str | None) -> list[int]:
    """--gpus 0,1 as indexes; anything else is one line, exit 2."""
    if text is None:
        return []
    found = []
    for item in text.split(","):
        item = item.strip()
        if not item.isascii() or not item.isdigit() or len(item) > 3:
            raise CliError(f"invalid --gpus {text!r}: GPU indexes such as 0,1", exit_code=2)
        found.append(int(item))
    return found


def unary(hub: HubClient, method: Any, request: object) -> Any:
    """A call whose refusal may be several lines (what each node's GPUs cannot hold): printed
    line by line, the last one as the command's error."""
    import grpc

    from cli.client import CALL_TIMEOUT_S

    try:
        return method(request, timeout=CALL_TIMEOUT_S)
    except grpc.RpcError as error:
        code = error.code() if isinstance(error, grpc.Call) else None
        lines = (error.details() or "").strip().splitlines() if isinstance(error, grpc.Call) else []
        if code == grpc.StatusCode.FAILED_PRECONDITION and len(lines) > 1:
            for line in lines[:-1]:
                error_line(line)
            raise CliError(lines[-1]) from None
        raise hub.error(error) from None


def start(hub: HubClient, method: Any, request: object) -> str:
    """Start an operation (refusals as `unary` says); its id."""
    operation_id: str = unary(hub, method, request).id
    return operation_id


def run(hub: HubClient, method: Any, request: object, detach: bool, as_json: bool) -> None:
    """Start an operation with `method` (any service's RPC answering OperationRef) and follow
    it live, or print only its id (--detach)."""
    from rich.text import Text

    from cli.ops_view import follow as follow_operation

    operation_id = start(hub, method, request)
    if detach:
        detached(operation_id, as_json)
        return
    if not as_json:
        console().print(Text(f"operation {operation_id}"))
    follow_operation(hub, operation_id, as_json)


def follow(ctx: typer.Context, method: str, request: object, detach: bool, as_json: bool) -> None:
    """Start the Models service's `method` operation and follow it (unless detached)."""
    from cli.models import connect

    hub, stub = connect(ctx)
    run(hub, getattr(stub, method), request, detach, as_json)


def switch(
    ctx: typer.Context,
    name: NameArg,
    node: NodeOption = None,
    gpus: Annotated[str | None, typer.Option(
        "--gpus", metavar="INDEXES", help="GPU indexes on each node, e.g. 0,1.")] = None,
    gpu_count: Annotated[int, typer.Option(
        "--gpu-count", min=0, max=64,
        help="GPUs (the first ones; vLLM's tensor parallel size); 0: one, or as --gpus.")] = 0,
    port: Annotated[int, typer.Option(
        min=0, max=65535, help="The port the server listens on, on the node (0: 8000).")] = 0,
    every: AllOption = False,
    labels: SelectorOption = None,
    serial: SerialOption = 0,
    max_fail: Annotated[str, typer.Option(help="Stop once more than this failed.")] = "0%",
    check: Annotated[bool, typer.Option(help="Report what would change only.")] = False,
    rollback: Annotated[bool, typer.Option(help="Restore the previous on failure.")] = True,
    force: Annotated[bool, typer.Option(
        help="Start it although the nodes' GPUs are too few or too small for it.")] = False,
    no_fetch: Annotated[bool, typer.Option(
        "--no-fetch", help="A registry model: refuse nodes whose cache does not hold it "
        "instead of fetching it first.")] = False,
    detach: DetachOption = False,
    as_json: JsonOption = False,
) -> None:  # fmt: skip
    """Run a model on nodes: drain and stop what runs there (a registry model is first
    fetched into caches that lack it), start the model's server, wait until it serves the
    model; roll back on failure."""
    from gpufleet.v1 import models_pb2

    request = models_pb2.SwitchModelRequest(
        name=name, targets=targets(node_names(node), every, labels), gpus=gpu_list(gpus),
        gpu_count=gpu_count, port=port, serial=serial, max_fail_percent=percent(max_fail),
        check=check, no_rollback=not rollback, force=force, no_fetch=no_fetch,
    )  # fmt: skip
    follow(ctx, "SwitchModel", request, detach, as_json)


def stop(
    ctx: typer.Context,
    name: NameArg,
    node: NodeOption = None,
    every: AllOption = False,
    labels: SelectorOption = None,
    detach: DetachOption = False,
    as_json: JsonOption = False,
) -> None:
    """Stop a model where it runs: on the nodes given, or on every node that runs it."""
    from gpufleet.v1 import hub_pb2, models_pb2

    names = node_names(node)
    chosen = targets(names, every, labels) if names or every or labels else hub_pb2.Targets()
    follow(ctx, "StopModel", models_pb2.StopModelRequest(name=name, targets=chosen), detach,
           as_json)  # fmt: skip


def running(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Only this model (name or alias).")] = None,
    labels: SelectorOption = None,
    as_json: JsonOption = False,
) -> None:
    """Where models run: node, model, engine, GPUs, state, since, endpoint."""
    from rich.text import Text

    from cli import models_view
    from cli.models import connect
    from gpufleet.v1 import models_pb2

    selector = checked_selector(labels)
    hub, stub = connect(ctx)
    request = models_pb2.ListRunningRequest(name=name or "", selector=selector)
    found = [models_view.running(m) for m in hub.call(stub.ListRunning, request).models]
    if as_json:
        emit_json(found)
    elif not found:
        where = "on the selected nodes" if selector else "on any node"
        console().print(Text(f"{name} runs on no node" if name else f"no model runs {where}"))
    else:
        console().print(models_view.running_table(found))


def logs(
    ctx: typer.Context,
    name: NameArg,
    node: Annotated[str, typer.Option("--node", metavar="NODE", help="The node it runs on.")],
    lines: Annotated[int, typer.Option(min=1, max=MAX_LINES, help="Lines from the end.")] = 100,
    as_json: JsonOption = False,
) -> None:
    """The last lines of a model server's log on a node."""
    from cli.models import connect
    from gpufleet.v1 import models_pb2

    if not node.strip() or "," in node:
        raise CliError("--node takes one node name, e.g. --node gpu-a", exit_code=2)
    hub, stub = connect(ctx)
    request = models_pb2.ModelLogsRequest(name=name, node=node.strip(), lines=lines)
    reply = hub.call(stub.ModelLogs, request)
    if as_json:
        emit_json({"node": reply.node, "project": reply.project, "log": reply.log})
        return
    sys.stdout.write(reply.log if not reply.log or reply.log.endswith("\n") else reply.log + "\n")
