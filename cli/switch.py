"""hubctl switch, drain, stop and status: what the nodes run, changed as operations."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from cli.output import CliError, DetachOption, JsonOption, console, emit_json, error_line

if TYPE_CHECKING:
    from gpufleet.v1 import hub_pb2

NodesArg = Annotated[list[str] | None, typer.Argument(help="Node names.", show_default=False)]
AllOption = Annotated[bool, typer.Option("--all", help="Every known node.")]
SerialOption = Annotated[int, typer.Option(min=0, help="Nodes at once; 0 = all.")]


def targets(nodes: list[str] | None, every: bool) -> hub_pb2.Targets:
    from gpufleet.v1 import hub_pb2

    if every and nodes:
        raise CliError("give node names or --all, not both", exit_code=2)
    if not every and not nodes:
        raise CliError("name the nodes (e.g. --node gpu-a) or use --all", exit_code=2)
    return hub_pb2.Targets(nodes=nodes or [], all=every)


def percent(text: str) -> float:
    try:
        value = float(text.strip().removesuffix("%"))
    except ValueError:
        raise CliError(f"invalid --max-fail {text!r}: a percentage such as 25%", 2) from None
    if not 0 <= value <= 100:
        raise CliError(f"invalid --max-fail {text!r}: between 0% and 100%", exit_code=2)
    return value


def submit(ctx: typer.Context, method: str, request: object, detach: bool, as_json: bool) -> None:
    """Start the Hub's `method` operation and follow it (unless detached)."""
    from cli.client import connect
    from cli.ops_view import launch

    client = connect(ctx)
    launch(client, getattr(client.stub, method), request, detach, as_json)


def switch(
    ctx: typer.Context,
    configuration: str,
    node: Annotated[list[str] | None, typer.Option("--node", help="Node (repeatable).")] = None,
    every: AllOption = False,
    serial: SerialOption = 0,
    max_fail: Annotated[str, typer.Option(help="Stop once more than this failed.")] = "0%",
    check: Annotated[bool, typer.Option(help="Report what would change only.")] = False,
    rollback: Annotated[bool, typer.Option(help="Restore the previous on failure.")] = True,
    detach: DetachOption = False,
    as_json: JsonOption = False,
) -> None:
    """Switch nodes to a configuration: drain, stop, start, wait until healthy."""
    from gpufleet.v1 import hub_pb2

    request = hub_pb2.SwitchRequest(
        configuration=configuration, targets=targets(node, every), serial=serial,
        max_fail_percent=percent(max_fail), check=check, no_rollback=not rollback,
    )  # fmt: skip
    submit(ctx, "Switch", request, detach, as_json)


def drain(ctx: typer.Context, nodes: NodesArg = None, every: AllOption = False,
          detach: DetachOption = False, as_json: JsonOption = False) -> None:  # fmt: skip
    """Mark nodes draining and wait until their services have no requests in flight."""
    from gpufleet.v1 import hub_pb2

    submit(ctx, "Drain", hub_pb2.DrainRequest(targets=targets(nodes, every)), detach, as_json)


def stop(ctx: typer.Context, nodes: NodesArg = None, every: AllOption = False,
         serial: SerialOption = 0, detach: DetachOption = False,
         as_json: JsonOption = False) -> None:  # fmt: skip
    """Stop what the nodes run (compose down)."""
    from gpufleet.v1 import hub_pb2

    request = hub_pb2.StopRequest(targets=targets(nodes, every), serial=serial)
    submit(ctx, "Stop", request, detach, as_json)


def status(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Every node: switch state, configuration, since when."""
    from cli import convert, render
    from cli.client import connect

    client = connect(ctx)
    found = [convert.node_state(n) for n in client.status()]
    if client.store_error:
        error_line(f"warning: {client.store_error}")
    if as_json:
        emit_json(found)
    else:
        console().print(render.status_table(found))
