"""hubctl commands for configurations, switching and operations."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from cli import convert, render
from cli.client import CliError, HubClient
from gpufleet.v1 import hub_pb2

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
NodesArg = Annotated[list[str] | None, typer.Argument(help="Node names.", show_default=False)]
AllOption = Annotated[bool, typer.Option("--all", help="Every known node.")]
DetachOption = Annotated[
    bool, typer.Option("--detach", help="Print the operation id and return at once.")
]
RESULT_STYLES = {"ok": "green", "changed": "yellow", "failed": "red", "unreachable": "red",
                 "skipped": "dim", "interrupted": "red"}  # fmt: skip
console = Console(width=None if sys.stdout.isatty() else 220)


def hub(ctx: typer.Context) -> HubClient:
    return HubClient(ctx.obj["hub"])


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2) + "\n")


def targets(nodes: list[str] | None, every: bool) -> hub_pb2.Targets:
    if every and nodes:
        raise CliError("give node names or --all, not both", exit_code=2)
    if not every and not nodes:
        raise CliError("name the nodes (e.g. --node gpu-a) or use --all", exit_code=2)
    return hub_pb2.Targets(nodes=nodes or [], all=every)


def percent(text: str) -> float:
    try:
        value = float(text.strip().removesuffix("%"))
    except ValueError:
        raise CliError(f"invalid --max-fail {text!r}: a percentage such as 25%", 2) from None
    if not 0 <= value <= 100:
        raise CliError(f"invalid --max-fail {text!r}: between 0% and 100%", exit_code=2)
    return value


def follow(client: HubClient, operation_id: str, as_json: bool) -> None:
    """Print the operation's events as they come, then its recap; exit 1 if it failed."""
    last: hub_pb2.Operation | None = None
    for event in client.watch(operation_id):
        if event.HasField("operation"):
            last = event.operation
        if as_json:
            continue
        when = event.at.ToDatetime().strftime("%H:%M:%S")
        who = event.node or "operation"
        console.print(Text.assemble((f"{when} ", "dim"), (f"{who:<16} ", "bold"),
                                    (f"{event.step:<9}", "cyan"), event.message))  # fmt: skip
    if last is None:
        last = client.operation(operation_id)
    found = convert.operation(last)
    if as_json:
        emit_json(found)
    else:
        console.print(recap(found))
    if found["status"] != "succeeded":
        raise typer.Exit(1)


def recap(operation: dict[str, Any]) -> Table:
    title = f"RECAP {operation['kind']} {operation['configuration']} ({operation['id']})"
    if operation["check"]:
        title += " [check mode: nothing changed]"
    table = Table(box=None, header_style="bold", title=title, title_justify="left")
    for column in ("NODE", "RESULT", "MESSAGE"):
        table.add_column(column)
    for node in operation["nodes"]:
        style = RESULT_STYLES.get(node["result"], "")
        table.add_row(node["node"], Text(node["result"], style=style), node["message"])
    counts = convert.result_counts(operation)
    table.caption = "  ".join(f"{k}={v}" for k, v in counts.items())
    table.caption_justify = "left"
    return table


def submit(ctx: typer.Context, method: str, request: object, detach: bool, as_json: bool) -> None:
    client = hub(ctx)
    operation_id = client.submit(method, request)
    if detach:
        if as_json:
            emit_json({"id": operation_id})
        else:
            console.print(f"operation {operation_id} started: hubctl ops watch {operation_id}")
        return
    if not as_json:
        console.print(f"operation {operation_id}")
    follow(client, operation_id, as_json)


def register(app: typer.Typer) -> None:
    configs_app = typer.Typer(help="Named configurations: compose projects with x-gpufleet.")
    ops_app = typer.Typer(help="Operations: switches, drains and stops, past and running.")
    app.add_typer(configs_app, name="configs")
    app.add_typer(ops_app, name="ops")

    @configs_app.callback(invoke_without_command=True)
    def configs(ctx: typer.Context, as_json: JsonOption = False) -> None:
        """The configurations the hub knows, with their use case and services."""
        if ctx.invoked_subcommand is not None:
            return
        reply = hub(ctx).configurations()
        found = [convert.configuration(c) for c in reply.configurations]
        if as_json:
            emit_json({"configurations": found, "errors": list(reply.errors)})
            return
        console.print(render.configs_table(found))
        for error in reply.errors:
            console.print(Text(f"not loaded: {error}", style="yellow"))

    @configs_app.command("validate")
    def validate(ctx: typer.Context, file: Path, as_json: JsonOption = False) -> None:
        """Check a configuration file before installing it; changes nothing."""
        try:
            content = file.read_text()
        except OSError as exc:
            raise CliError(f"cannot read {file}: {exc.strerror}", exit_code=2) from None
        reply = hub(ctx).validate(file.name, content)
        if as_json:
            emit_json({"valid": reply.valid, "error": reply.error or None})
        elif reply.valid:
            services = ", ".join(s.name for s in reply.configuration.services)
            console.print(f"{file}: valid configuration {reply.configuration.name} ({services})")
        if not reply.valid:
            if not as_json:
                print(f"hubctl: {reply.error}", file=sys.stderr)
            raise typer.Exit(1)

    @app.command()
    def switch(
        ctx: typer.Context,
        configuration: str,
        node: Annotated[list[str] | None, typer.Option("--node", help="Node (repeatable).")] = None,
        every: AllOption = False,
        serial: Annotated[int, typer.Option(min=0, help="Nodes at once; 0 = all.")] = 0,
        max_fail: Annotated[str, typer.Option(help="Stop once more than this failed.")] = "0%",
        check: Annotated[bool, typer.Option(help="Report what would change only.")] = False,
        rollback: Annotated[bool, typer.Option(help="Restore the previous on failure.")] = True,
        detach: DetachOption = False,
        as_json: JsonOption = False,
    ) -> None:  # fmt: skip
        """Switch nodes to a configuration: drain, stop, start, wait until healthy."""
        request = hub_pb2.SwitchRequest(
            configuration=configuration, targets=targets(node, every), serial=serial,
            max_fail_percent=percent(max_fail), check=check, no_rollback=not rollback,
        )  # fmt: skip
        submit(ctx, "Switch", request, detach, as_json)

    @app.command()
    def drain(ctx: typer.Context, nodes: NodesArg = None, every: AllOption = False,
              detach: DetachOption = False, as_json: JsonOption = False) -> None:  # fmt: skip
        """Mark nodes draining and wait until their services have no requests in flight."""
        submit(ctx, "Drain", hub_pb2.DrainRequest(targets=targets(nodes, every)), detach, as_json)

    @app.command()
    def stop(ctx: typer.Context, nodes: NodesArg = None, every: AllOption = False,
             serial: Annotated[int, typer.Option(min=0, help="Nodes at once; 0 = all.")] = 0,
             detach: DetachOption = False, as_json: JsonOption = False) -> None:  # fmt: skip
        """Stop what the nodes run (compose down)."""
        request = hub_pb2.StopRequest(targets=targets(nodes, every), serial=serial)
        submit(ctx, "Stop", request, detach, as_json)

    @app.command()
    def status(ctx: typer.Context, as_json: JsonOption = False) -> None:
        """Every node: switch state, configuration, since when."""
        found = [convert.node_state(n) for n in hub(ctx).status()]
        if as_json:
            emit_json(found)
        else:
            console.print(render.status_table(found))

    @ops_app.callback(invoke_without_command=True)
    def ops(ctx: typer.Context, limit: Annotated[int, typer.Option(min=1)] = 20,
            as_json: JsonOption = False) -> None:  # fmt: skip
        """Recent operations, newest first."""
        if ctx.invoked_subcommand is not None:
            return
        found = [convert.operation(o) for o in hub(ctx).operations(limit)]
        if as_json:
            emit_json(found)
        else:
            console.print(render.operations_table(found))

    @ops_app.command("show")
    def ops_show(ctx: typer.Context, operation_id: str, as_json: JsonOption = False) -> None:
        """One operation with each node's result."""
        found = convert.operation(hub(ctx).operation(operation_id))
        if as_json:
            emit_json(found)
            return
        console.print(f"{found['status']}: {found['message']}")
        console.print(recap(found))

    @ops_app.command("watch")
    def ops_watch(ctx: typer.Context, operation_id: str, as_json: JsonOption = False) -> None:
        """Follow an operation's events until it ends (from its start)."""
        follow(hub(ctx), operation_id, as_json)
