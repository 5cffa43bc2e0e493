"""hubctl keys: ApiKey messages as plain dicts (what --json prints) and their human form.

Pure functions; rich and the stubs load with this module, never at hubctl's start. Names and
identities from the hub are Text, never rich markup.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

from cli.convert import stamp
from gpufleet.v1 import gateway_pb2

CREATE_HINT = "hubctl keys create --name app1"
COLUMNS = ("NAME", "PREFIX", "MODELS", "CREATED", "CREATED BY", "REVOKED")


def key(message: gateway_pb2.ApiKey) -> dict[str, Any]:
    """Flat: the models a list (empty: every model), times ISO 8601 in UTC or null."""
    return {
        "name": message.name, "prefix": message.prefix, "models": list(message.models),
        "created": stamp(message, "created"), "created_by": message.created_by,
        "revoked": stamp(message, "revoked"),
    }  # fmt: skip


def no_keys(show_all: bool) -> str:
    what = "No API key" if show_all else "No valid API key"
    return f"{what}: the gateway refuses every request. Create one: {CREATE_HINT}"


def keys_table(found: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in COLUMNS:
        table.add_column(column)
    for row in found:
        revoked = row["revoked"] or "-"
        table.add_row(
            Text(row["name"], style="dim" if row["revoked"] else ""), Text(row["prefix"]),
            Text(",".join(row["models"]) or "all"), row["created"] or "", Text(row["created_by"]),
            Text(revoked, style="red" if row["revoked"] else ""),
        )  # fmt: skip
    return table
