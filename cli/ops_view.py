"""Operations on the terminal: events as they come, the recap, the events the hub stored.

Shared by switch, drain, stop, `assign apply|rollback` and `hubctl ops`. A step event is a
boundary the hub walks (drain, stop, start, ready...); a progress event is an agent's
report from inside a task, shown dim and indented under its node, with the percent if any.
A node's warnings (switch: what its GPUs cannot hold) are yellow `warning:` lines under its
row of the recap, and `nodes[].warnings` in --json.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer
from rich.console import Group
from rich.table import Table
from rich.text import Text

from cli import convert
from cli.client import HubClient
from cli.output import console, detached, emit_json
from gpufleet.v1 import hub_pb2

RESULT_STYLES = {"ok": "green", "changed": "yellow", "failed": "red", "unreachable": "red",
                 "skipped": "dim", "cancelled": "magenta", "interrupted": "red"}  # fmt: skip


def event_line(event: dict[str, Any]) -> Text:
    """'12:00:01 gpu-a            drain    ...'; progress: '...   pull       42% ...', dim."""
    when = event["at"][11:19] if event["at"] else "--:--:--"  # ISO 8601: the time of day
    who = event["node"] or "operation"
    if not event["progress"]:
        warning = event["step"] == "warning"
        return Text.assemble((f"{when} ", "dim"), (f"{who:<16} ", "bold"),
                             (f"{event['step']:<9}", "yellow" if warning else "cyan"),
                             (event["message"], "yellow" if warning else ""))  # fmt: skip
    percent = f"{event['percent']:>3.0f}% " if event["percent"] is not None else ""
    step = f"{event['step']:<9}" if len(event["step"]) < 9 else f"{event['step']} "
    line = f"{when} {who:<16}   {step}{percent}{event['message']}"
    return Text(line, style="dim")


def recap(operation: dict[str, Any]) -> Table:
    # A stop or drain has no configuration: no "None" (or empty gap) in the title.
    named = " ".join(filter(None, ["RECAP", operation["kind"], operation["configuration"]]))
    title = f"{named} ({operation['id']})"
    if operation["check"]:
        title += " [check mode: nothing changed]"
    # Every string from the hub or a node is Text, never rich markup: `stat [/srv/x]` would
    # raise MarkupError, and `[blink red]` in a node's message would style the terminal.
    table = Table(box=None, header_style="bold", title=Text(title), title_justify="left")
    for column in ("NODE", "RESULT", "MESSAGE"):
        table.add_column(column)
    for node in operation["nodes"]:
        style = RESULT_STYLES.get(node["result"], "")
        table.add_row(Text(node["node"]), Text(node["result"], style=style), Text(node["message"]))
        for warning in node["warnings"]:
            table.add_row(Text(""), Text("warning:", style="yellow"), Text(warning, style="yellow"))
    counts = convert.result_counts(operation)
    table.caption = Text("  ".join(f"{k}={v}" for k, v in counts.items()))
    table.caption_justify = "left"
    return table


def stored_events(operation: dict[str, Any]) -> Group:
    """What `ops show` prints after the recap: what was not kept, then every stored event."""
    lines = [
        Text(
            f"{n['progress_dropped']} earlier progress events of {n['node']} not kept", style="dim"
        )
        for n in operation["nodes"]
        if n["progress_dropped"]
    ]
    return Group(*lines, *(event_line(e) for e in operation.get("events", [])))


def follow(client: HubClient, operation_id: str, as_json: bool) -> None:
    """Print the operation's events as they come, then its recap; exit 1 if it failed."""
    last: hub_pb2.Operation | None = None
    for event in client.watch(operation_id):
        if event.HasField("operation"):
            last = event.operation
        if not as_json:
            console().print(event_line(convert.operation_event(event)))
    message = last if last is not None else client.operation(operation_id)
    found = convert.operation(message)
    if as_json:
        emit_json(found)
    else:
        console().print(recap(found))
    if found["status"] != "succeeded":
        raise typer.Exit(1)


def launch(
    client: HubClient, method: Callable[..., Any], request: object, detach: bool, as_json: bool
) -> None:
    """Start an operation with `method` (an RPC answering OperationRef), then follow it."""
    operation_id: str = client.call(method, request).id
    if detach:
        detached(operation_id, as_json)
        return
    if not as_json:
        console().print(Text(f"operation {operation_id}"))
    follow(client, operation_id, as_json)
