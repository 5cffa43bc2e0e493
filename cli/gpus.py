"""hubctl gpus: every GPU of the cluster, once or refreshed in place."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import typer

from cli.output import JsonOption, console, emit_json

if TYPE_CHECKING:
    from rich.table import Table

    from cli.client import HubClient


def view(hub: HubClient) -> Table | str:
    from cli import convert, render

    found = [convert.node_gpu(g) for g in hub.list_gpus()]
    return render.gpus_table(found) if found else "No GPUs detected on any node."


def gpus(
    ctx: typer.Context,
    as_json: JsonOption = False,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Refresh in place.")] = False,
    interval: Annotated[float, typer.Option(min=0.2, help="Seconds between refreshes.")] = 2.0,
) -> None:
    """Every GPU of the cluster: VRAM, utilization, temperature, power."""
    from cli import convert
    from cli.client import connect

    hub = connect(ctx)
    if as_json:
        emit_json([convert.node_gpu(g) for g in hub.list_gpus()])
    elif not watch:
        console().print(view(hub))
    else:
        from rich.live import Live

        with Live(view(hub), console=console(), auto_refresh=False) as live:
            try:
                while True:
                    time.sleep(interval)
                    live.update(view(hub), refresh=True)
            except KeyboardInterrupt:
                pass
