"""Human output: tables, VRAM bars, ages. Pure functions of the dicts in cli/convert.py."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

BAR_WIDTH = 12
STATUS_STYLES = {"ready": "green", "down": "red"}
STATE_STYLES = {"ready": "green", "failed": "red", "stopped": "dim"}
Cell = str | tuple[str, str]  # text, or (text, style)
ANSI = {"green": "32", "red": "31", "yellow": "33", "dim": "2", "bold": "1", "bold red": "1;31"}
NODE_COLUMNS = ("NAME", "STATUS", "LABELS", "GPUS", "LAST HEARTBEAT")
GPU_COLUMNS = ("GPU", "NAME", "STATE", "VRAM", "UTIL", "TEMP", "POWER", "CC/GFX")
STATUS_COLUMNS = ("NODE", "LINK", "STATE", "CONFIGURATION", "SINCE", "NOTE")


class Stream:
    """A table printed as its rows come, page by page, in the layout of the Rich tables
    (no box, two spaces between columns). The widths are chosen from the headers and the
    first page: a wider value later widens its own line only, nothing is drawn again."""

    def __init__(self, headers: Sequence[str], out: TextIO, color: bool) -> None:
        self.headers = list(headers)
        self.out = out
        self.color = color
        self.widths: list[int] | None = None
        self.rows = 0

    def _line(self, cells: Sequence[Cell], widths: list[int]) -> str:
        parts = []
        last = len(cells) - 1
        for i, cell in enumerate(cells):
            text, style = (cell, "") if isinstance(cell, str) else cell
            pad = " " * (widths[i] - _width(text)) if i < last else ""  # negative: none
            if style and self.color:
                text = f"\x1b[{ANSI.get(style, '0')}m{text}\x1b[0m"
            parts.append(text + pad)
        return " " + "  ".join(parts)

    def page(self, rows: Sequence[Sequence[Cell]]) -> None:
        if not rows:
            return
        lines = []
        if self.widths is None:
            self.widths = [cell_len(h) for h in self.headers]
            for row in rows:
                for i, cell in enumerate(row):
                    self.widths[i] = max(self.widths[i], cell_len(_text(cell)))
            lines.append(self._line([(h, "bold") for h in self.headers], self.widths))
        lines += [self._line(row, self.widths) for row in rows]
        self.out.write("\n".join(lines) + "\n")
        self.out.flush()
        self.rows += len(rows)


def streamed(
    pages: Iterable[Sequence[dict[str, Any]]], headers: Sequence[str],
    cells: Callable[[dict[str, Any]], list[Cell]], out: Console,
) -> int:  # fmt: skip
    """Print each page's rows as it comes (see Stream); the number of rows printed. A reader
    that goes away (`hubctl gpus | head`) ends the listing quietly: no more pages are asked."""
    color = out.is_terminal and out.color_system is not None and not out.no_color
    stream = Stream(headers, sys.stdout, color)
    try:
        for page in pages:
            stream.page([cells(row) for row in page])
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return stream.rows


def _width(text: str) -> int:
    """Terminal cells of `text`: its length when it is printable ASCII (nearly every cell,
    and 40,000 rows of `hubctl gpus` ask), else Rich's count (wide and zero-width ones)."""
    return len(text) if text.isascii() and text.isprintable() else cell_len(text)


def _text(cell: Cell) -> str:
    return cell if isinstance(cell, str) else cell[0]


def table(headers: Sequence[str], rows: Sequence[Sequence[Cell]], **options: Any) -> Table:
    """The same rows as one Rich table (what `nodes show` and `gpus --watch` print)."""
    found = Table(box=None, header_style="bold", **options)
    for column in headers:
        found.add_column(column)
    for row in rows:
        found.add_row(*(c if isinstance(c, str) else Text(c[0], style=c[1]) for c in row))
    return found


def gb(mb: int) -> str:
    """MiB (as NVML counts) as GiB with one decimal, dropping a trailing .0: 24564 -> '24',
    19304 -> '18.9', 81559 -> '79.6'."""
    text = f"{mb / 1024:.1f}"
    return text.removesuffix(".0")


def vram_bar(used_mb: int, total_mb: int, width: int = BAR_WIDTH) -> str:
    """'████████░░░░ 18.9/24 GiB'."""
    filled = 0 if total_mb <= 0 else round(width * min(used_mb, total_mb) / total_mb)
    return f"{'█' * filled}{'░' * (width - filled)} {gb(used_mb)}/{gb(total_mb)} GiB"


def ago(iso: str | None, now: datetime | None = None) -> str:
    if iso is None:
        return "never"
    moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    seconds = max(0, int(((now or datetime.now(UTC)) - moment).total_seconds()))
    if seconds < 60:
        return f"{seconds}s ago"
    if seconds < 3600:
        return f"{seconds // 60}m ago"
    if seconds < 86400:
        return f"{seconds // 3600}h ago"
    return f"{seconds // 86400}d ago"


def status(text: str) -> Text:
    return Text(text, style=STATUS_STYLES.get(text, "yellow"))


def none_match(what: str, names: list[str], selector: list[str],
               **flags: list[str]) -> Text:  # fmt: skip
    """What an empty filtered listing says: 'No node matches -l role=chat.' (`flags`: other
    filters by option name, gpu_state=['lost'] for --gpu-state lost)."""
    wanted = [f"--node {','.join(names)}"] if names else []
    wanted += [f"-l {','.join(selector)}"] if selector else []
    wanted += [f"--{flag.replace('_', '-')} {','.join(v)}" for flag, v in flags.items() if v]
    return Text(f"No {what} matches {' '.join(wanted)}.")


def labels(values: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in values.items()) or "-"


def node_cells(node: dict[str, Any]) -> list[Cell]:
    status = node["status"]
    return [node["name"], (status, STATUS_STYLES.get(status, "yellow")), labels(node["labels"]),
            str(node["gpu_count"]), ago(node["last_seen"])]  # fmt: skip


def nodes_table(nodes: list[dict[str, Any]]) -> Table:
    return table(NODE_COLUMNS, [node_cells(node) for node in nodes])


def na(value: float | None, unit: str, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{unit}"


def gpu_cells(gpu: dict[str, Any]) -> list[Cell]:
    ident = gpu["compute_capability"] or gpu["gfx_target"] or "-"
    if gpu["state"] == "lost":
        return [str(gpu["index"]), gpu["name"], ("LOST", "bold red"), "-", "-", "-", "-", ident]
    power = na(gpu["power_draw_w"], "")
    if gpu["power_limit_w"] is not None:
        power += f"/{gpu['power_limit_w']:.0f}"
    power += " W" if gpu["power_draw_w"] is not None else ""
    return [
        str(gpu["index"]),
        gpu["name"],
        (gpu["state"], "green"),
        vram_bar(gpu["memory_used_mb"], gpu["memory_total_mb"]),
        na(gpu["utilization_percent"], "%"),
        na(gpu["temperature_c"], " C"),
        power,
        ident,
    ]


def node_gpu_cells(gpu: dict[str, Any]) -> list[Cell]:
    return [gpu["node"], *gpu_cells(gpu)]


def gpus_table(gpus: list[dict[str, Any]], with_node: bool = True) -> Table:
    if with_node:
        return table(["NODE", *GPU_COLUMNS], [node_gpu_cells(gpu) for gpu in gpus])
    return table(GPU_COLUMNS, [gpu_cells(gpu) for gpu in gpus])


def events_table(events: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold", title="Recent events", title_justify="left")
    for column in ("WHEN", "EVENT", "MESSAGE"):
        table.add_column(column)
    for event in events:
        table.add_row(ago(event["at"]), event["kind"], event["message"])
    return table


def node_details(node: dict[str, Any]) -> Table:
    table = Table(box=None, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("Name", node["name"])
    table.add_row(
        "Status", Text.assemble(status(node["status"]), f" since {ago(node['status_since'])}")
    )
    state = node["state"] + (f" ({node['configuration']})" if node["configuration"] else "")
    table.add_row("State", Text.assemble(
        Text(state, style=STATE_STYLES.get(node["state"], "yellow")),
        f" since {ago(node['state_since'])}" if node["state_since"] else "",
        f": {node['state_message']}" if node["state_message"] else "",
    ))  # fmt: skip
    table.add_row("Labels", labels(node["labels"]))
    table.add_row("Host", f"{node['hostname'] or '-'} ({node['address'] or 'no address'})")
    table.add_row("Agent", node["agent_version"] or "-")
    table.add_row("Last heartbeat", ago(node["last_seen"]))
    table.add_row("First seen", node["first_seen"] or "-")
    table.add_row("GPU probe", node["probe"] or "-")  # its error: once, under the GPUs
    return table


def probe_problem(node: dict[str, Any]) -> Text | None:
    """The probe's error, said once: why no GPUs were found, or what went wrong beside them."""
    reason = node["probe_error"]
    if not node["gpus"]:
        return Text("No GPUs detected" + (f": {reason}" if reason else "."))
    return Text(f"GPU probe error: {reason}", style="yellow") if reason else None


def preflight(lines: list[str]) -> Table | None:
    """What the node's agent found will fail (each line: the problem and its fix); None when
    it found nothing."""
    if not lines:
        return None
    table = Table(box=None, show_header=False, title="Preflight", title_justify="left")
    table.add_column()
    for line in lines:
        table.add_row(Text(f"- {line}", style="yellow"))
    return table


def configs_table(configs: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold")
    for column in ("NAME", "USE CASE", "SERVICES", "DESCRIPTION"):
        table.add_column(column)
    for config in configs:
        services = ", ".join(
            f"{s['name']} ({s['vram_gb']:g} GB x{s['gpu_count']}"
            + (f", model {s['model_ref']})" if s.get("model_ref") else ")")
            for s in config["services"]
        )
        table.add_row(config["name"], config["use_case"], services, config["description"])
    return table


def state_cells(node: dict[str, Any]) -> list[Cell]:
    note = node["message"] or ""
    if node["operation_id"]:
        note = f"in operation {node['operation_id']} {note}".strip()
    status = node["status"]
    return [node["node"], (status, STATUS_STYLES.get(status, "yellow")),
            (node["state"], STATE_STYLES.get(node["state"], "yellow")),
            node["configuration"] or "-", ago(node["since"]), note]  # fmt: skip


def status_table(nodes: list[dict[str, Any]]) -> Table:
    return table(STATUS_COLUMNS, [state_cells(node) for node in nodes])


def operations_table(operations: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold")
    for column in ("ID", "KIND", "CONFIGURATION", "STATUS", "NODES", "STARTED", "MESSAGE"):
        table.add_column(column)
    for op in operations:
        kind = op["kind"] + (" (check)" if op["check"] else "")
        table.add_row(op["id"], kind, op["configuration"] or "-", op["status"],
                      str(len(op["nodes"])), ago(op["created"]), op["message"])  # fmt: skip
    return table


def transitions_table(transitions: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold", title="State transitions",
                  title_justify="left")  # fmt: skip
    for column in ("WHEN", "FROM", "TO", "CONFIGURATION", "OPERATION", "NOTE"):
        table.add_column(column)
    for t in transitions:
        table.add_row(ago(t["at"]), t["from"], t["to"], t["configuration"] or "-",
                      t["operation_id"] or "-", t["message"] or "")  # fmt: skip
    return table
