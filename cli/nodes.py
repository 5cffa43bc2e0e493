"""hubctl nodes: the GPU hosts of the cluster (`nodes remove` is in cli/trust.py)."""

from __future__ import annotations

import typer

from cli.output import (
    LINK_STATUSES,
    NODE_STATES,
    JsonOption,
    LimitOption,
    NodeOption,
    SelectorOption,
    StateOption,
    StatusOption,
    choices,
    console,
    emit_json,
    node_names,
)
from cli.output import selector as checked_selector

app = typer.Typer(help="The nodes (GPU hosts) of the cluster.")
NO_NODES = ("No nodes yet: `hubctl tokens create` prints a join token and the command that "
            "enrolls a GPU host with it.")  # fmt: skip


@app.callback(invoke_without_command=True)
def nodes(
    ctx: typer.Context,
    node: NodeOption = None,
    labels: SelectorOption = None,
    status: StatusOption = None,
    state: StateOption = None,
    limit: LimitOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the nodes: status, labels, GPUs, last heartbeat (-l role=chat: only those)."""
    if ctx.invoked_subcommand is not None:
        return
    names, selector = node_names(node), checked_selector(labels)
    links, states = (
        choices("--status", status, LINK_STATUSES),
        choices("--state", state, NODE_STATES),
    )
    from cli import convert, render
    from cli.client import connect
    from gpufleet.v1 import hub_pb2

    request = hub_pb2.ListNodesRequest(names=names, selector=selector, status=links, state=states)
    pages = connect(ctx).node_pages(request, limit or 0)
    found = ([convert.node(n) for n in page] for page in pages)
    if as_json:
        emit_json([n for page in found for n in page])
        return
    if render.streamed(found, render.NODE_COLUMNS, render.node_cells, console()):
        return
    if names or selector or links or states:
        console().print(render.none_match("node", names, selector, status=links, state=states))
    else:
        console().print(NO_NODES)


@app.command("show")
def show(ctx: typer.Context, name: str, as_json: JsonOption = False) -> None:
    """One node in detail, with its GPUs and what its agent's preflight found."""
    from cli import convert, render
    from cli.client import connect

    found = convert.node(connect(ctx).get_node(name), with_gpus=True)
    if as_json:
        emit_json(found)
        return
    out = console()
    out.print(render.node_details(found))
    if found["gpus"]:
        out.print(render.gpus_table(found["gpus"], with_node=False))
    for part in (render.probe_problem(found), render.preflight(found["preflight"])):
        if part is not None:
            out.print(part)
    if found["transitions"]:
        out.print(render.transitions_table(found["transitions"]))
    if found["events"]:
        out.print(render.events_table(found["events"]))
