"""hubctl gpus: every GPU of the cluster, once or refreshed in place."""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.output import JsonOption, NodeOption, SelectorOption, console, emit_json, node_names
from cli.output import selector as checked_selector

if TYPE_CHECKING:
    from rich.console import RenderableType

    from cli.client import HubClient


def found(hub: HubClient, names: list[str], selector: list[str]) -> list[dict[str, Any]]:
    from cli import convert

    every = [convert.node_gpu(g) for g in hub.list_gpus(selector)]
    return [g for g in every if not names or g["node"] in names]


def view(hub: HubClient, names: list[str], selector: list[str]) -> RenderableType:
    from cli import render

    gpus = found(hub, names, selector)
    if gpus:
        return render.gpus_table(gpus)
    if names or selector:
        return render.none_match("GPU", names, selector)
    return "No GPUs detected on any node."


def gpus(
    ctx: typer.Context,
    node: NodeOption = None,
    labels: SelectorOption = None,
    as_json: JsonOption = False,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Refresh in place (piped: one table a turn).")
    ] = False,
    interval: Annotated[float, typer.Option(min=0.2, help="Seconds between refreshes.")] = 2.0,
) -> None:
    """Every GPU of the cluster: VRAM (GiB), utilization, temperature, power."""
    from cli.client import connect

    names, selector = node_names(node), checked_selector(labels)
    hub = connect(ctx)
    if as_json:
        emit_json(found(hub, names, selector))
    elif not watch:
        console().print(view(hub, names, selector))
    elif not sys.stdout.isatty():
        snapshots(hub, names, selector, interval)
    else:
        from rich.live import Live

        with Live(view(hub, names, selector), console=console(), auto_refresh=False) as live:
            try:
                while True:
                    time.sleep(interval)
                    live.update(view(hub, names, selector), refresh=True)
            except KeyboardInterrupt:
                pass


def snapshots(hub: HubClient, names: list[str], selector: list[str], interval: float) -> None:
    """--watch into a pipe or a file: a table per interval, each after a line with the time,
    flushed at once (no terminal to redraw in place)."""
    try:
        while True:
            shown = view(hub, names, selector)
            print(f"# {time.strftime('%Y-%m-%d %H:%M:%S')}")
            console().print(shown)
            sys.stdout.flush()
            time.sleep(interval)
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:  # `hubctl gpus --watch | head`: the reader is gone
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
