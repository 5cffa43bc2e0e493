"""hubctl switch, drain, stop and status: what the nodes run, changed as operations."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from cli.output import (
    LINK_STATUSES,
    NODE_STATES,
    CliError,
    DetachOption,
    JsonOption,
    LimitOption,
    NodeOption,
    SelectorOption,
    StateOption,
    StatusOption,
    choices,
    console,
    detached,
    emit_json,
    error_line,
    node_names,
)
from cli.output import selector as checked_selector

if TYPE_CHECKING:
    from gpufleet.v1 import hub_pb2

NodesArg = Annotated[
    list[str] | None, typer.Argument(help="Node names (the same as --node).", show_default=False)
]
AllOption = Annotated[bool, typer.Option("--all", help="Every known node.")]
SerialOption = Annotated[int, typer.Option(min=0, help="Nodes at once; 0 = all.")]


def targets(nodes: list[str], every: bool, labels: list[str] | None) -> hub_pb2.Targets:
    """Which nodes: named (--node), by label (-l: alone, every connected node that matches;
    with --node or --all, those that also match), or --all."""
    from gpufleet.v1 import hub_pb2

    selector = checked_selector(labels)
    if every and nodes:
        raise CliError("give node names or --all, not both", exit_code=2)
    if not every and not nodes and not selector:
        raise CliError(
            "name the nodes (--node gpu-a), select them by label (-l role=chat) or use --all",
            exit_code=2,
        )
    return hub_pb2.Targets(nodes=nodes, all=every, selector=selector)


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

    client = connect(ctx)
    if detach:
        detached(client.call(getattr(client.stub, method), request).id, as_json)
        return
    from cli.ops_view import launch

    launch(client, getattr(client.stub, method), request, False, as_json)


def switch(
    ctx: typer.Context,
    configuration: str,
    node: NodeOption = None,
    every: AllOption = False,
    labels: SelectorOption = None,
    serial: SerialOption = 0,
    max_fail: Annotated[str, typer.Option(help="Stop once more than this failed.")] = "0%",
    check: Annotated[bool, typer.Option(help="Report what would change only.")] = False,
    rollback: Annotated[bool, typer.Option(help="Restore the previous on failure.")] = True,
    detach: DetachOption = False,
    as_json: JsonOption = False,
) -> None:
    """Switch nodes to a configuration: drain, stop, start, wait until healthy."""
    from gpufleet.v1 import hub_pb2

    chosen = targets(node_names(node), every, labels)
    request = hub_pb2.SwitchRequest(
        configuration=configuration, targets=chosen, serial=serial,
        max_fail_percent=percent(max_fail), check=check, no_rollback=not rollback,
    )  # fmt: skip
    submit(ctx, "Switch", request, detach, as_json)


def drain(ctx: typer.Context, nodes: NodesArg = None, node: NodeOption = None,
          every: AllOption = False, labels: SelectorOption = None,
          detach: DetachOption = False, as_json: JsonOption = False) -> None:  # fmt: skip
    """Mark nodes draining and wait until their services have no requests in flight."""
    from gpufleet.v1 import hub_pb2

    chosen = targets(node_names([*(nodes or []), *(node or [])]), every, labels)
    submit(ctx, "Drain", hub_pb2.DrainRequest(targets=chosen), detach, as_json)


def stop(ctx: typer.Context, nodes: NodesArg = None, node: NodeOption = None,
         every: AllOption = False, labels: SelectorOption = None, serial: SerialOption = 0,
         detach: DetachOption = False, as_json: JsonOption = False) -> None:  # fmt: skip
    """Stop what the nodes run (compose down)."""
    from gpufleet.v1 import hub_pb2

    chosen = targets(node_names([*(nodes or []), *(node or [])]), every, labels)
    submit(ctx, "Stop", hub_pb2.StopRequest(targets=chosen, serial=serial), detach, as_json)


def status(ctx: typer.Context, node: NodeOption = None, labels: SelectorOption = None,
           link: StatusOption = None, state: StateOption = None, limit: LimitOption = None,
           as_json: JsonOption = False) -> None:  # fmt: skip
    """Every node: switch state, configuration, since when."""
    names, selector = node_names(node), checked_selector(labels)
    links, states = choices("--status", link, LINK_STATUSES), choices("--state", state, NODE_STATES)
    from cli import convert, render
    from cli.client import connect
    from gpufleet.v1 import hub_pb2

    client = connect(ctx)
    request = hub_pb2.GetStatusRequest(names=names, selector=selector, status=links, state=states)
    found = (
        [convert.node_state(n) for n in page] for page in client.state_pages(request, limit or 0)
    )
    if as_json:
        rows = [n for page in found for n in page]
        warn(client.store_error)
        emit_json(rows)
        return
    shown = render.streamed(found, render.STATUS_COLUMNS, render.state_cells, console())
    warn(client.store_error)
    if not shown and (names or selector or links or states):
        console().print(render.none_match("node", names, selector, status=links, state=states))
    elif not shown:
        console().print(render.status_table([]))


def warn(store_error: str) -> None:
    if store_error:
        error_line(f"warning: {store_error}")
