"""hubctl nodes: the GPU hosts of the cluster (`nodes remove` is in cli/trust.py)."""

from __future__ import annotations

import typer

from cli.output import JsonOption, console, emit_json

app = typer.Typer(help="The nodes (GPU hosts) of the cluster.")


@app.callback(invoke_without_command=True)
def nodes(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List the nodes: status, labels, GPUs, last heartbeat."""
    if ctx.invoked_subcommand is not None:
        return
    from cli import convert
    from cli.client import connect

    found = [convert.node(n) for n in connect(ctx).list_nodes()]
    if as_json:
        emit_json(found)
    elif not found:
        console().print("No nodes yet: start an agent with `gpufleet-agent --hub HOST:PORT`.")
    else:
        from cli import render

        console().print(render.nodes_table(found))


@app.command("show")
def show(ctx: typer.Context, name: str, as_json: JsonOption = False) -> None:
    """One node in detail, with its GPUs."""
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
    else:
        reason = found["probe_error"]
        out.print("No GPUs detected" + (f": {reason}" if reason else "."))
    if found["transitions"]:
        out.print(render.transitions_table(found["transitions"]))
    if found["events"]:
        out.print(render.events_table(found["events"]))
