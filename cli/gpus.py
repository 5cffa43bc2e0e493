"""hubctl gpus: every GPU of the cluster, once or refreshed in place."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.output import (
    GPU_STATES,
    LINK_STATUSES,
    JsonOption,
    LimitOption,
    NodeOption,
    SelectorOption,
    StatusOption,
    choices,
    console,
    emit_json,
    node_names,
)
from cli.output import selector as checked_selector

if TYPE_CHECKING:
    from rich.console import RenderableType

    from cli.client import HubClient
    from gpufleet.v1 import hub_pb2

GpuStateOption = Annotated[
    list[str] | None,
    typer.Option("--gpu-state", metavar="STATE", show_default=False,
                 help=f"Only GPUs in these states: {', '.join(GPU_STATES)}."),
]  # fmt: skip


def pages(hub: HubClient, request: hub_pb2.ListGpusRequest, limit: int = 0
          ) -> Iterator[list[dict[str, Any]]]:  # fmt: skip
    from cli import convert

    for page in hub.gpu_pages(request, limit):
        yield [convert.node_gpu(g) for g in page]


def nothing(request: hub_pb2.ListGpusRequest) -> RenderableType:
    """What an empty listing says."""
    from cli import render

    names, selector = list(request.names), list(request.selector)
    links, states = list(request.status), list(request.gpu_state)
    if names or selector or links or states:
        return render.none_match("GPU", names, selector, status=links, gpu_state=states)
    return "No GPUs detected on any node."


def view(hub: HubClient, request: hub_pb2.ListGpusRequest, limit: int) -> RenderableType:
    """The whole listing as one table (what --watch redraws)."""
    from cli import render

    gpus = [gpu for page in pages(hub, request, limit) for gpu in page]
    return render.gpus_table(gpus) if gpus else nothing(request)


def gpus(
    ctx: typer.Context,
    node: NodeOption = None,
    labels: SelectorOption = None,
    status: StatusOption = None,
    gpu_state: GpuStateOption = None,
    limit: LimitOption = None,
    as_json: JsonOption = False,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Refresh in place (piped: one table a turn).")
    ] = False,
    interval: Annotated[float, typer.Option(min=0.2, help="Seconds between refreshes.")] = 2.0,
) -> None:
    """Every GPU of the cluster: VRAM (GiB), utilization, temperature, power."""
    names, selector = node_names(node), checked_selector(labels)
    links = choices("--status", status, LINK_STATUSES)
    states = choices("--gpu-state", gpu_state, GPU_STATES)
    from cli.client import connect
    from gpufleet.v1 import hub_pb2

    request = hub_pb2.ListGpusRequest(names=names, selector=selector, status=links,
                                      gpu_state=states)  # fmt: skip
    hub = connect(ctx)
    if as_json:
        emit_json([gpu for page in pages(hub, request, limit or 0) for gpu in page])
    elif not watch:
        from cli import render

        found = pages(hub, request, limit or 0)
        if not render.streamed(found, ["NODE", *render.GPU_COLUMNS], render.node_gpu_cells,
                               console()):  # fmt: skip
            console().print(nothing(request))
    elif not sys.stdout.isatty():
        snapshots(hub, request, limit or 0, interval)
    else:
        from rich.live import Live

        shown = view(hub, request, limit or 0)
        with Live(shown, console=console(), auto_refresh=False) as live:
            try:
                while True:
                    time.sleep(interval)
                    live.update(view(hub, request, limit or 0), refresh=True)
            except KeyboardInterrupt:
                pass


def snapshots(
    hub: HubClient, request: hub_pb2.ListGpusRequest, limit: int, interval: float
) -> None:
    """--watch into a pipe or a file: a table per interval, each after a line with the time,
    flushed at once (no terminal to redraw in place)."""
    try:
        while True:
            shown = view(hub, request, limit)
            print(f"# {time.strftime('%Y-%m-%d %H:%M:%S')}")
            console().print(shown)
            sys.stdout.flush()
            time.sleep(interval)
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:  # `hubctl gpus --watch | head`: the reader is gone
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
