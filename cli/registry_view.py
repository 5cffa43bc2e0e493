"""hubctl registry: Registry messages as plain dicts (what --json prints) and their human form.

Pure functions; rich and the stubs load with this module, never at hubctl's start. Every
string from the hub or a node is Text, never rich markup (a message may hold `[...]`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from cli.convert import stamp
from cli.render import ago
from gpufleet.v1 import registry_pb2

STATE_STYLES = {"ready": "green", "complete": "green", "pulling": "cyan", "fetching": "cyan",
                "partial": "yellow", "failed": "red"}  # fmt: skip
PULL_HINT = "hubctl registry pull NAME --hf ORG/REPO (or hubctl registry import NAME PATH)"
SHORT = 12  # characters of a revision or sha256 shown in tables


def entry(message: registry_pb2.RegistryEntry) -> dict[str, Any]:
    return {
        "name": message.name,
        "source": message.source,
        "revision": message.revision,
        "files": message.files,
        "size_bytes": message.size,
        "pulled": stamp(message, "pulled"),
        "state": message.state,
        "message": message.message,
        "chunk_size": message.chunk_size,
        "layout": message.layout,
        "repo": message.repo or None,
    }


def registry_file(message: registry_pb2.RegistryFile) -> dict[str, Any]:
    return {"path": message.path, "size_bytes": message.size, "sha256": message.sha256,
            "chunks": len(message.chunks)}  # fmt: skip


def node_cache(message: registry_pb2.NodeCache) -> dict[str, Any]:
    return {
        "node": message.node,
        "connected": message.connected,
        "entry": message.entry,
        "revision": message.revision,
        "size_bytes": message.size,
        "verified": message.verified,
        "state": message.state,
        "path": message.path,
    }


def detail(reply: registry_pb2.GetEntryResponse) -> dict[str, Any]:
    return {
        "entry": entry(reply.entry),
        "files": [registry_file(f) for f in reply.files],
        "models": list(reply.models),
        "caches": [node_cache(c) for c in reply.caches],
    }


def size(count: int) -> str:
    """Bytes as GiB (one decimal) from 1 GiB, MiB from 1 MiB, KiB from 1 KiB, else bytes."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if count >= 1 << shift:
            return f"{count / (1 << shift):.1f} {unit}"
    return f"{count} B"


def state_cell(state: str) -> Text:
    return Text(state or "?", style=STATE_STYLES.get(state, "yellow"))


def node_cell(found: dict[str, Any]) -> Text:
    if found["connected"]:
        return Text(found["node"])
    return Text.assemble(found["node"], (" (down)", "red"))


def entries_table(entries: list[dict[str, Any]], now: datetime | None = None) -> Table:
    """`hubctl registry`: one row per entry; a MESSAGE column (why it failed, what a pull is
    doing) only when one has something to say."""
    with_message = any(e["message"].strip() for e in entries)
    table = Table(box=None, header_style="bold")
    for column in ("NAME", "SOURCE", "REVISION", "FILES", "SIZE", "PULLED", "STATE"):
        table.add_column(column, no_wrap=True)
    if with_message:
        table.add_column("MESSAGE", overflow="fold")
    for found in entries:
        row: list[str | Text] = [
            Text(found["name"]), Text(found["source"]), Text(found["revision"][:SHORT] or "-"),
            str(found["files"]), size(found["size_bytes"]),
            ago(found["pulled"], now) if found["pulled"] else "-", state_cell(found["state"]),
        ]  # fmt: skip
        if with_message:
            row.append(Text(" ".join(found["message"].split()), style="dim"))
        table.add_row(*row)
    return table


def no_entries() -> Text:
    return Text(f"The registry is empty. Fill it: {PULL_HINT}")


def caches_table(caches: list[dict[str, Any]]) -> Table:
    """`hubctl registry caches`: one row per node and entry its cache holds."""
    table = Table(box=None, header_style="bold")
    for column in ("NODE", "ENTRY", "REVISION", "SIZE", "STATE", "VERIFIED", "PATH"):
        table.add_column(column, no_wrap=column != "PATH")
    for found in caches:
        table.add_row(
            node_cell(found), Text(found["entry"]), Text(found["revision"][:SHORT] or "-"),
            size(found["size_bytes"]), state_cell(found["state"]),
            "yes" if found["verified"] else "no", Text(found["path"] or "-"),
        )  # fmt: skip
    return table


def no_caches(name: str, selector: list[str]) -> Text:
    what = f" holds {name}" if name else " holds a registry entry"
    where = f" (-l {','.join(selector)})" if selector else ""
    return Text(f"No node{where}{what}. Fetch one: hubctl models cache MODEL --node NODE")


def files_table(files: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold")
    for column in ("PATH", "SIZE", "SHA256"):
        table.add_column(column, no_wrap=column != "PATH", overflow="fold")
    for found in files:
        table.add_row(Text(found["path"]), size(found["size_bytes"]), Text(found["sha256"]))
    return table


def show(found: dict[str, Any], now: datetime | None = None) -> Group:
    """`hubctl registry show`: the entry's facts, its files, who uses it, who holds it."""
    item = found["entry"]
    pulled = f"{found['entry']['pulled']} ({ago(item['pulled'], now)})" if item["pulled"] else "-"
    layout = item["layout"] + (f" ({item['repo']})" if item["repo"] else "")
    facts = [
        ("source", item["source"]), ("revision", item["revision"] or "-"),
        ("state", item["state"]), ("layout", layout or "-"),
        ("files", f"{item['files']}, {size(item['size_bytes'])}"), ("pulled", pulled),
        ("models", ", ".join(found["models"]) or "-"),
    ]  # fmt: skip
    if item["message"].strip():
        facts.insert(3, ("message", " ".join(item["message"].split())))
    lines: list[Text | Table] = [Text(item["name"], style="bold")]
    lines += [Text(f"  {key + ':':<10}{value}") for key, value in facts]
    if found["files"]:
        lines += [Text(""), files_table(found["files"])]
    if found["caches"]:
        lines += [Text(""), caches_table(found["caches"])]
    else:
        lines += [Text(""), Text("Cached on no node.")]
    return Group(*lines)


def removed_line(found: dict[str, Any]) -> str:
    return f"removed {found['name']} ({found['files']} files, {size(found['size_bytes'])})"
