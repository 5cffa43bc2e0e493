"""hubctl envs: Envs messages as plain dicts (what --json prints) and their human form.

Pure functions; rich and the stubs load with this module, never at hubctl's start. Every
string from the hub or a node is Text, never rich markup (a message may hold `[...]`).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from rich.table import Table
from rich.text import Text

from cli.convert import stamp
from cli.render import ago
from gpufleet.v1 import agent_link_pb2, envs_pb2, models_pb2

STATE_STYLES = {"ready": "green", "building": "cyan", "failed": "red", "broken": "red"}
ORIGINS = {"compiled": "compiled here", "cache": "from cache"}
DEVICE_DETAIL = re.compile(r"\s*\([^)]*\)\s*$")  # "llvmpipe (LLVM 15.0.6, 256 bits)"
DEVICE_WIDTH = 28
DEVICES_SHOWN = 2
BUILD_HINT = "hubctl envs build --backend cpu --node NODE"


def env(message: envs_pb2.NodeEnv) -> dict[str, Any]:
    info = message.env
    return {
        "node": message.node,
        "connected": message.connected,
        "name": info.name,
        "backend": info.backend,
        "version": info.version,
        "state": info.state,
        "message": info.message,
        "gpu_offload": info.gpu_offload,
        "devices": list(info.devices),
        "size_bytes": info.size_bytes,
        "built_at": stamp(info, "built_at"),
        "origin": info.origin or None,
        "key": info.key or None,
        "system_info": info.system_info,
        "models": list(message.models),
    }


def size(count: int) -> str:
    """Bytes as GiB with one decimal from 1 GiB on, MiB below; '-' for none (not known yet)."""
    if count <= 0:
        return "-"
    if count >= 1 << 30:
        return f"{count / (1 << 30):.1f} GiB"
    return f"{max(1, round(count / (1 << 20)))} MiB"


def device(name: str) -> str:
    """'Vulkan0: llvmpipe (LLVM 15.0.6, 256 bits)' -> 'Vulkan0: llvmpipe', at most 28 chars."""
    short = DEVICE_DETAIL.sub("", name.strip()) or name.strip()
    return short if len(short) <= DEVICE_WIDTH else short[: DEVICE_WIDTH - 3] + "..."


def offload(found: dict[str, Any]) -> str:
    """What the verification gate saw: the devices the layers went to, 'yes' (offload
    without a device named), 'no', or '-' (not verified: building, failed)."""
    if found["state"] not in ("ready", "broken"):
        return "-"
    if not found["gpu_offload"]:
        return "no"
    devices = [device(d) for d in found["devices"] if d.strip()]
    if not devices:
        return "yes"
    more = len(devices) - DEVICES_SHOWN
    return ", ".join(devices[:DEVICES_SHOWN]) + (f" +{more} more" if more > 0 else "")


def node_cell(found: dict[str, Any]) -> Text:
    if found["connected"]:
        return Text(found["node"])
    return Text.assemble(found["node"], (" (down)", "red"))


def envs_table(envs: list[dict[str, Any]], now: datetime | None = None) -> Table:
    """`hubctl envs`: one row per node and environment; a MESSAGE column (why it failed or
    is broken, what a build is doing) only when one has something to say."""
    with_message = any(e["message"].strip() for e in envs)
    table = Table(box=None, header_style="bold")
    for column in ("NODE", "ENV", "BACKEND", "VERSION", "STATE", "OFFLOAD", "SIZE", "BUILT",
                   "FROM", "USED BY"):  # fmt: skip
        table.add_column(column, no_wrap=column != "USED BY")
    if with_message:
        table.add_column("MESSAGE", overflow="fold")
    for found in envs:
        row: list[str | Text] = [
            node_cell(found), Text(found["name"]), found["backend"], Text(found["version"]),
            Text(found["state"], style=STATE_STYLES.get(found["state"], "yellow")),
            Text(offload(found)), size(found["size_bytes"]),
            ago(found["built_at"], now) if found["built_at"] else "-",
            ORIGINS.get(found["origin"] or "", found["origin"] or "-"),
            Text(", ".join(found["models"]) or "-"),
        ]  # fmt: skip
        if with_message:
            style = "red" if found["state"] in ("failed", "broken") else "dim"
            row.append(Text(" ".join(found["message"].split()), style=style))
        table.add_row(*row)
    return table


def no_envs(names: list[str], selector: list[str], backend: str) -> Text:
    """What an empty listing says, and how to build one."""
    wanted = [f"--node {','.join(names)}"] if names else []
    wanted += [f"-l {','.join(selector)}"] if selector else []
    wanted += [f"--backend {backend}"] if backend else []
    where = f" matches {' '.join(wanted)}" if wanted else ""
    hint = BUILD_HINT.replace("cpu", backend or "cpu")
    return Text(f"No environment{where}. Build one: {hint}")


def wheel_meta(meta: agent_link_pb2.WheelMeta) -> dict[str, Any]:
    return {
        "key": meta.key,
        "filename": meta.filename,
        "size_bytes": meta.size,
        "sha256": meta.sha256,
        "parts": dict(sorted(meta.parts.items())),
        "built_on": meta.built_on or None,
        "built_at": stamp(meta, "built_at"),
    }


def wheel(message: envs_pb2.CachedWheel) -> dict[str, Any]:
    return {**wheel_meta(message.meta), "nodes": list(message.nodes)}


def cache(reply: envs_pb2.ListWheelsResponse) -> dict[str, Any]:
    return {"wheels": [wheel(w) for w in reply.wheels], "total_bytes": reply.total_bytes}


def wheels_table(wheels: list[dict[str, Any]], now: datetime | None = None) -> Table:
    """`hubctl envs cache`: one row per cached wheel."""
    table = Table(box=None, header_style="bold")
    for column in ("KEY", "BACKEND", "VERSION", "TOOLKIT", "TARGETS", "ARCH", "SIZE",
                   "BUILT ON", "BUILT", "USED BY"):  # fmt: skip
        table.add_column(column)
    for found in wheels:
        parts = found["parts"]
        table.add_row(
            found["key"][:12], Text(parts.get("backend") or "?"),
            Text(parts.get("version") or "?"), Text(parts.get("toolkit") or "-"),
            Text((parts.get("targets") or "-").replace(";", ",")), Text(parts.get("arch") or "?"),
            size(found["size_bytes"]), Text(found["built_on"] or "?"),
            ago(found["built_at"], now) if found["built_at"] else "-",
            Text(", ".join(found["nodes"]) or "-"),
        )  # fmt: skip
    return table


def cache_total(found: dict[str, Any]) -> str:
    count = len(found["wheels"])
    if not count:
        return f"The wheel cache is empty: a build uploads its wheel ({BUILD_HINT})."
    noun = "wheel" if count == 1 else "wheels"
    return f"{count} {noun}, {size(found['total_bytes']) if found['total_bytes'] else '0 MiB'}"


def removed(reply: envs_pb2.RemoveEnvResponse) -> list[dict[str, Any]]:
    return [{"node": r.node, "name": r.name, "ok": r.ok, "message": r.message}
            for r in reply.removed]  # fmt: skip


def removal_line(found: dict[str, Any], asked: str) -> Text:
    """'gpu-a: vulkan-0.3.36 removed'; refused or failed on a node: its word, red."""
    said = " ".join(found["message"].split()) or ("removed" if found["ok"] else "not removed")
    line = f"{found['node']}: {found['name'] or asked}: {said}"
    return Text(line, style="" if found["ok"] else "red")


def switched(reply: models_pb2.SwitchBackendResponse) -> dict[str, Any]:
    """SwitchBackendResponse as --json prints it (the issue's keys)."""
    return {
        "instant_switch": reply.instant_switch,
        "environment": reply.environment,
        "operation_id": reply.operation_id or None,
        "nodes": list(reply.nodes),
        "builds": list(reply.builds),
    }


def building_nodes(found: dict[str, Any]) -> list[str]:
    """The nodes that build first: those a builds entry starts with ('gpu-b has no ready
    vulkan environment', 'gpu-b: ...')."""
    named = []
    for entry in found["builds"]:
        first = entry.strip().split(" ", 1)[0].removesuffix(":")
        if first in found["nodes"] and first not in named:
            named.append(first)
    return named


def switch_line(found: dict[str, Any], model: str, backend: str, restart: bool) -> str:
    """What switch-backend says before it watches: instant, or what is built first."""
    where = ", ".join(found["nodes"])
    if found["instant_switch"]:
        if found["operation_id"]:
            return f"instant switch: {model} restarts from {found['environment']} on {where}"
        why = "--no-restart: nothing restarted" if not restart else "nothing runs it to restart"
        return (f"instant switch: {model} will run from {found['environment']} at its next "
                f"start ({why})")  # fmt: skip
    nodes = building_nodes(found)
    on = f" on {', '.join(nodes)}" if nodes else ""
    why = "; ".join(" ".join(b.split()) for b in found["builds"]) or f"no {backend} environment"
    then = "then switching" if restart else "then associating (no restart)"
    return f"building {backend}{on} first: {why}; {then}"
