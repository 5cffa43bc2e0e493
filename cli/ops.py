"""hubctl ops: operations (switches, drains, stops, assignments), past and running."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.output import JsonOption, console, emit_json, error_line

app = typer.Typer(help="Operations: switches, drains and stops, past and running.")


@app.callback(invoke_without_command=True)
def ops(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(min=1)] = 20,
    as_json: JsonOption = False,
) -> None:
    """Recent operations, newest first."""
    if ctx.invoked_subcommand is not None:
        return
    from cli import convert, render
    from cli.client import connect

    client = connect(ctx)
    found = [convert.operation(o) for o in client.operations(limit)]
    if client.store_error:
        error_line(f"warning: {client.store_error}")
    if as_json:
        emit_json(found)
    else:
        console().print(render.operations_table(found))


@app.command("show")
def show(ctx: typer.Context, operation_id: str, as_json: JsonOption = False) -> None:
    """One operation with each node's result, then its stored events (steps and progress)."""
    from cli import convert, ops_view
    from cli.client import connect

    found = convert.operation(connect(ctx).operation(operation_id, with_events=True), True)
    if as_json:
        emit_json(found)
        return
    console().print(f"{found['status']}: {found['message']}")
    console().print(ops_view.recap(found))
    console().print(ops_view.stored_events(found))  # nothing at all when there are none


@app.command("watch")
def watch(ctx: typer.Context, operation_id: str, as_json: JsonOption = False) -> None:
    """Follow an operation's events until it ends (from its start)."""
    from cli import ops_view
    from cli.client import connect

    ops_view.follow(connect(ctx), operation_id, as_json)


@app.command("cancel")
def cancel(ctx: typer.Context, operation_id: str, as_json: JsonOption = False) -> None:
    """Stop a running operation: nodes not started are skipped, running tasks cancelled."""
    from cli import convert, ops_view
    from cli.client import connect

    found = convert.operation(connect(ctx).cancel(operation_id))
    if as_json:
        emit_json(found)
        return
    console().print(f"{found['status']}: {found['message']}")
    console().print(ops_view.recap(found))
