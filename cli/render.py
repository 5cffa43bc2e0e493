"""Human output: tables, VRAM bars, ages. Pure functions of the dicts in cli/convert.py."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.table import Table
from rich.text import Text

BAR_WIDTH = 12
STATUS_STYLES = {"ready": "green", "down": "red"}


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


def none_match(what: str, names: list[str], selector: list[str]) -> Text:
    """What an empty filtered listing says: 'No node matches -l role=chat.'"""
    wanted = [f"--node {','.join(names)}"] if names else []
    wanted += [f"-l {','.join(selector)}"] if selector else []
    return Text(f"No {what} matches {' '.join(wanted)}.")


def labels(values: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in values.items()) or "-"


def nodes_table(nodes: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold")
    for column in ("NAME", "STATUS", "LABELS", "GPUS", "LAST HEARTBEAT"):
        table.add_column(column)
    for node in nodes:
        table.add_row(
            node["name"],
            status(node["status"]),
            labels(node["labels"]),
            str(node["gpu_count"]),
            ago(node["last_seen"]),
        )
    return table


def na(value: float | None, unit: str, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{unit}"


def gpu_cells(gpu: dict[str, Any]) -> list[str | Text]:
    ident = gpu["compute_capability"] or gpu["gfx_target"] or "-"
    if gpu["state"] == "lost":
        return [str(gpu["index"]), gpu["name"], Text("LOST", style="bold red"),
                "-", "-", "-", "-", ident]  # fmt: skip
    power = na(gpu["power_draw_w"], "")
    if gpu["power_limit_w"] is not None:
        power += f"/{gpu['power_limit_w']:.0f}"
    power += " W" if gpu["power_draw_w"] is not None else ""
    return [
        str(gpu["index"]),
        gpu["name"],
        Text(gpu["state"], style="green"),
        vram_bar(gpu["memory_used_mb"], gpu["memory_total_mb"]),
        na(gpu["utilization_percent"], "%"),
        na(gpu["temperature_c"], " C"),
        power,
        ident,
    ]


def gpus_table(gpus: list[dict[str, Any]], with_node: bool = True) -> Table:
    table = Table(box=None, header_style="bold")
    columns = ["GPU", "NAME", "STATE", "VRAM", "UTIL", "TEMP", "POWER", "CC/GFX"]
    for column in ["NODE", *columns] if with_node else columns:
        table.add_column(column)
    for gpu in gpus:
        cells = gpu_cells(gpu)
        table.add_row(*([gpu["node"], *cells] if with_node else cells))
    return table


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


STATE_STYLES = {"ready": "green", "failed": "red", "stopped": "dim"}


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


def status_table(nodes: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold")
    for column in ("NODE", "LINK", "STATE", "CONFIGURATION", "SINCE", "NOTE"):
        table.add_column(column)
    for node in nodes:
        note = node["message"] or ""
        if node["operation_id"]:
            note = f"in operation {node['operation_id']} {note}".strip()
        table.add_row(
            node["node"], status(node["status"]),
            Text(node["state"], style=STATE_STYLES.get(node["state"], "yellow")),
            node["configuration"] or "-", ago(node["since"]), note,
        )  # fmt: skip
    return table


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
