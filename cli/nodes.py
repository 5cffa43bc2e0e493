"""hubctl nodes: the GPU hosts of the cluster (`nodes remove` is in cli/trust.py)."""

from __future__ import annotations

import typer

from cli.output import JsonOption, NodeOption, SelectorOption, console, emit_json, node_names
from cli.output import selector as checked_selector

app = typer.Typer(help="The nodes (GPU hosts) of the cluster.")


@app.callback(invoke_without_command=True)
def nodes(
    ctx: typer.Context,
    node: NodeOption = None,
    labels: SelectorOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the nodes: status, labels, GPUs, last heartbeat (-l role=chat: only those)."""
    if ctx.invoked_subcommand is not None:
        return
    from cli import convert
    from cli.client import connect

    names, selector = node_names(node), checked_selector(labels)
    found = [convert.node(n) for n in connect(ctx).list_nodes(selector)]
    found = [n for n in found if not names or n["name"] in names]
    if as_json:
        emit_json(found)
        return
    from cli import render

    if found:
        console().print(render.nodes_table(found))
    elif names or selector:
        console().print(render.none_match("node", names, selector))
    else:
        console().print(
            "No nodes yet: `hubctl tokens create` prints a join token and the command that "
            "enrolls a GPU host with it."
        )


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
