"""hubctl usage: each GPU's telemetry history, hour by hour (or the raw samples the hub keeps
for a short window), from the hub's GetGpuUsage."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.output import (
    CliError,
    JsonOption,
    LimitOption,
    SelectorOption,
    console,
    emit_json,
    node_names,
)
from cli.output import selector as checked_selector

if TYPE_CHECKING:
    from collections.abc import Sequence

    from cli.render import Cell
    from gpufleet.v1 import hub_pb2

NodesOption = Annotated[
    list[str] | None,
    typer.Option("--node", "--nodes", "-n", metavar="NODE", show_default=False,
                 help="A node name (repeatable, or a,b)."),
]  # fmt: skip
SinceOption = Annotated[
    str, typer.Option("--since", metavar="WHEN",
                      help="From this long ago (30m, 6h, 2d) or this ISO time."),
]  # fmt: skip
RawOption = Annotated[
    bool, typer.Option("--raw", help="Each sample the hub kept (its short raw window).")
]
RELATIVE = re.compile(r"^(\d{1,6})([smhd])$")
UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DEFAULT_SINCE = "24h"


def since_moment(text: str, now: datetime | None = None) -> datetime:
    """--since: a span back from now (90s, 30m, 6h, 2d) or an ISO time (a date alone is its
    midnight; no zone is UTC). CliError, exit 2, for anything else."""
    now = now or datetime.now(UTC)
    found = RELATIVE.match(text.strip())
    if found:
        return now - timedelta(seconds=int(found[1]) * UNIT_S[found[2]])
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise CliError(
            f"--since {text[:64]!r} is neither a span (30m, 6h, 2d) nor an ISO time "
            "(2026-12-01T10:00Z)", exit_code=2,
        ) from None  # fmt: skip
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def row(message: hub_pb2.GpuUsage) -> dict[str, Any]:
    """One GpuUsage as a dict (what --json prints); temperature and power 0: not reported."""
    start = datetime.fromtimestamp(message.start.seconds, UTC)
    return {
        "node": message.node,
        "gpu": message.index,
        "start": start.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "span_s": message.span_s,
        "samples": message.samples,
        "utilization_avg": round(message.utilization_avg, 1),
        "utilization_max": message.utilization_max,
        "memory_used_avg_mb": message.memory_used_avg_mb,
        "memory_used_max_mb": message.memory_used_max_mb,
        "temperature_max_c": round(message.temperature_max_c, 1) or None,
        "power_avg_w": round(message.power_avg_w, 1) or None,
    }


def _gib(mb: int) -> str:
    return f"{mb / 1024:.1f}"


HEADERS = ("NODE", "GPU", "HOUR (UTC)", "SAMPLES", "UTIL avg/max", "MEM GiB avg/max",
           "TEMP max", "POWER avg")  # fmt: skip


def cells(r: dict[str, Any]) -> list[Cell]:
    """One row of the table: a raw sample's time to the second, an hour's to the minute."""
    start = r["start"].replace("T", " ").removesuffix("Z")
    temperature, power = r["temperature_max_c"], r["power_avg_w"]
    return [
        r["node"], str(r["gpu"]), start if r["span_s"] == 0 else start[:16], str(r["samples"]),
        f"{r['utilization_avg']:.0f}/{r['utilization_max']}%",
        f"{_gib(r['memory_used_avg_mb'])}/{_gib(r['memory_used_max_mb'])}",
        "-" if temperature is None else f"{temperature:.0f} C",
        "-" if power is None else f"{power:.0f} W",
    ]  # fmt: skip


def _span(seconds: int) -> str:
    if seconds and seconds % 86400 == 0:
        return f"{seconds // 86400}d"
    if seconds and seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    return f"{seconds // 60}m"


def usage(
    ctx: typer.Context,
    node: NodesOption = None,
    labels: SelectorOption = None,
    since: SinceOption = DEFAULT_SINCE,
    raw: RawOption = False,
    limit: LimitOption = None,
    as_json: JsonOption = False,
) -> None:
    """Each GPU's utilization, memory, temperature and power, hour by hour (--raw: sample by
    sample), from the hub's telemetry history, printed page by page as it comes."""
    from gpufleet.v1 import hub_pb2

    names, selector = node_names(node), checked_selector(labels)
    moment = since_moment(since)
    from cli.client import connect

    hub = connect(ctx)
    request = hub_pb2.GpuUsageRequest(selector=selector, names=names, raw=raw)
    request.since.FromSeconds(int(moment.timestamp()))
    kept = [0, 0]  # the hub's raw window and hours kept, from its latest page

    def rows(reply: hub_pb2.GpuUsageResponse) -> Sequence[hub_pb2.GpuUsage]:
        kept[:] = reply.raw_window_s, reply.keep_s
        return reply.usage

    found = ([row(m) for m in page] for page in hub.listing(hub.stub.GetGpuUsage, request,
                                                             rows, limit or 0))  # fmt: skip
    if as_json:
        emit_json([r for page in found for r in page])
        return
    from cli import render

    out = console()
    headers = [*HEADERS[:2], "TIME (UTC)" if raw else HEADERS[2], *HEADERS[3:]]
    if not render.streamed(found, headers, cells, out):
        if names or selector:
            out.print(render.none_match("GPU usage", names, selector))
        else:
            out.print(f"No GPU usage recorded since {moment.isoformat(timespec='minutes')}.")
    if kept != [0, 0]:
        out.print(f"The hub keeps raw samples for {_span(kept[0])} and hours for "
                  f"{_span(kept[1])}.", style="dim")  # fmt: skip
