"""Assignment messages -> plain dicts (what --json prints) and the tables made of them."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from cli.convert import stamp
from cli.render import vram_bar
from gpufleet.v1 import assign_pb2 as pb

UNITS = "GB above: GiB (1024 MiB), the unit of vram_gb"
CHANGE_MARKS = {
    "added": ("+", "green"),
    "moved": ("~", "yellow"),
    "budget": ("~", "yellow"),
    "removed": ("-", "red"),
}


def assignment(a: pb.Assignment) -> dict[str, Any]:
    return {
        "service": a.service,
        "node": a.node,
        "gpus": list(a.gpus),
        "vram_gb": round(a.vram_gb, 3),
        "vram_budget_gb": a.vram_budget_gb if a.HasField("vram_budget_gb") else None,
        "strategy": a.strategy,
    }


def preview(r: pb.PreviewAssignmentsResponse) -> dict[str, Any]:
    return {
        "configuration": r.configuration,
        "strategy": r.strategy,
        "proved_optimal": r.proved_optimal if r.HasField("proved_optimal") else None,
        "assignments": [assignment(a) for a in r.assignments],
        "gpus": [
            {
                "node": g.node,
                "index": g.index,
                "name": g.name,
                "memory_total_mb": g.memory_total_mb,
                "lost": g.lost,
                "services": list(g.services),
                "reserved_gb": g.reserved_gb,
            }
            for g in r.gpus
        ],
        "warnings": [
            {
                "kind": w.kind,
                "message": w.message,
                "service": w.service or None,
                "node": w.node or None,
                "gpu": w.gpu if w.HasField("gpu") else None,
            }
            for w in r.warnings
        ],
        "unplaced": [{"service": u.service, "reason": u.reason} for u in r.unplaced],
        "changes": [
            {
                "service": c.service,
                "change": c.change,
                "before": assignment(c.before) if c.HasField("before") else None,
                "after": assignment(c.after) if c.HasField("after") else None,
            }
            for c in r.changes
        ],
    }


def assignment_set(s: pb.AssignmentSet) -> dict[str, Any]:
    return {
        "configuration": s.configuration,
        "strategy": s.strategy or None,
        "applied": stamp(s, "applied"),
        "current": [assignment(a) for a in s.current],
        "previous": [assignment(a) for a in s.previous],
        "pins": [assignment(a) for a in s.pins],
    }


def where(a: dict[str, Any] | None) -> str:
    if a is None:
        return "-"
    budget = f", budget {a['vram_budget_gb']:g} GB" if a["vram_budget_gb"] is not None else ""
    return f"{a['node']} GPU {','.join(map(str, a['gpus']))}{budget}"


def gpu_table(found: dict[str, Any]) -> Table:
    by_service = {a["service"]: a for a in found["assignments"]}
    title = f"{found['configuration']} with {found['strategy']}"
    if found["proved_optimal"] is not None:
        title += " (proved optimal)" if found["proved_optimal"] else " (optimality not proved)"
    table = Table(box=None, header_style="bold", title=title, title_justify="left")
    for column in ("NODE", "GPU", "NAME", "SERVICES", "VRAM EST.", "BUDGET", "RESERVED"):
        table.add_column(column)
    for g in found["gpus"]:
        services = g["services"]
        est = ", ".join(f"{by_service[s]['vram_gb']:g}" for s in services) or "-"
        budget = (
            ", ".join(
                f"{by_service[s]['vram_budget_gb']:g}"
                if by_service[s]["vram_budget_gb"] is not None
                else "-"
                for s in services
            )
            or "-"
        )
        used = round(g["reserved_gb"] * 1024)
        bar: str | Text = (
            Text("LOST", style="bold red") if g["lost"] else vram_bar(used, g["memory_total_mb"])
        )
        table.add_row(
            g["node"], str(g["index"]), g["name"], ", ".join(services) or "-", est, budget, bar
        )
    return table


def preview_view(found: dict[str, Any]) -> Group:
    parts: list[Table | Text] = [gpu_table(found)]
    for w in found["warnings"]:
        parts.append(Text(f"warning: {w['message']}", style="yellow"))
    if not found["changes"]:
        parts.append(Text("no change from the assignments in force", style="dim"))
    for c in found["changes"]:
        mark, style = CHANGE_MARKS.get(c["change"], ("?", ""))
        line = f"{mark} {c['service']}: {where(c['before'])} -> {where(c['after'])}"
        parts.append(Text(line, style=style))
    parts.append(Text(UNITS, style="dim"))
    return Group(*parts)


def sets_table(sets: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold")
    for column in ("CONFIGURATION", "SERVICE", "IN FORCE", "PREVIOUS", "PIN", "STRATEGY"):
        table.add_column(column)
    for s in sets:
        parts = {k: {a["service"]: a for a in s[k]} for k in ("current", "previous", "pins")}
        for name in sorted(set().union(*(p.keys() for p in parts.values()))):
            cells = [where(parts[k].get(name)) for k in ("current", "previous", "pins")]
            table.add_row(s["configuration"], name, *cells, s["strategy"] or "-")
    return table
