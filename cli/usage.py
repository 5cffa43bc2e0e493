"""hubctl usage: each GPU's telemetry history, hour by hour (or the raw samples the hub keeps
for a short window), from the hub's GetGpuUsage."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.output import CliError, JsonOption, SelectorOption, console, emit_json, node_names
from cli.output import selector as checked_selector

if TYPE_CHECKING:
    from rich.table import Table

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


def table(rows: list[dict[str, Any]], raw: bool) -> Table:
    from rich.table import Table

    out = Table(box=None, header_style="bold")
    for column in ("NODE", "GPU", "TIME (UTC)" if raw else "HOUR (UTC)", "SAMPLES",
                   "UTIL avg/max", "MEM GiB avg/max", "TEMP max", "POWER avg"):  # fmt: skip
        out.add_column(column, justify="left" if column in ("NODE", "HOUR (UTC)") else "right")
    for r in rows:
        start = r["start"].replace("T", " ").removesuffix("Z")
        temperature, power = r["temperature_max_c"], r["power_avg_w"]
        out.add_row(
            r["node"], str(r["gpu"]), start if raw else start[:16], str(r["samples"]),
            f"{r['utilization_avg']:.0f}/{r['utilization_max']}%",
            f"{_gib(r['memory_used_avg_mb'])}/{_gib(r['memory_used_max_mb'])}",
            "-" if temperature is None else f"{temperature:.0f} C",
            "-" if power is None else f"{power:.0f} W",
        )  # fmt: skip
    return out


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
    as_json: JsonOption = False,
) -> None:
    """Each GPU's utilization, memory, temperature and power, hour by hour (--raw: sample by
    sample), from the hub's telemetry history."""
    from gpufleet.v1 import hub_pb2

    names, selector = node_names(node), checked_selector(labels)
    moment = since_moment(since)
    from cli.client import connect

    hub = connect(ctx)
    request = hub_pb2.GpuUsageRequest(selector=selector, names=names, raw=raw)
    request.since.FromSeconds(int(moment.timestamp()))
    found: list[dict[str, Any]] = []
    seen: set[str] = set()
    while True:
        reply: hub_pb2.GpuUsageResponse = hub.call(hub.stub.GetGpuUsage, request)
        found += [row(message) for message in reply.usage]
        kept = (reply.raw_window_s, reply.keep_s)
        if not reply.next_page_token or reply.next_page_token in seen:
            break  # a hub repeating a token must not loop forever
        seen.add(reply.next_page_token)
        request.page_token = reply.next_page_token
    if as_json:
        emit_json(found)
        return
    out = console()
    if found:
        out.print(table(found, raw))
    elif names or selector:
        from cli import render

        out.print(render.none_match("GPU usage", names, selector))
    else:
        out.print(f"No GPU usage recorded since {moment.isoformat(timespec='minutes')}.")
    if kept != (0, 0):
        out.print(f"The hub keeps raw samples for {_span(kept[0])} and hours for "
                  f"{_span(kept[1])}.", style="dim")  # fmt: skip
