"""hubctl: the operator's command line."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from cli import assign, convert, credentials, ops, render, trust, up
from cli.client import CliError, HubClient

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Operate a gpufleet cluster through its hub.",
)
nodes_app = typer.Typer(help="The nodes (GPU hosts) of the cluster.")
app.add_typer(nodes_app, name="nodes")
ops.register(app)
trust.register(app, nodes_app)
assign.register(app)

# Piped output (grep, logs) keeps one row per line instead of wrapping at 80 columns.
console = Console(width=None if sys.stdout.isatty() else 220)
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def client(ctx: typer.Context) -> HubClient:
    hub: str = ctx.obj["hub"]
    return HubClient(hub)


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2) + "\n")


@app.callback()
def root(
    ctx: typer.Context,
    hub: Annotated[
        str | None,
        typer.Option(
            "--hub",
            envvar="GPUFLEET_HUB",
            metavar="HOST:PORT",
            help="The hub to talk to (default: the config file's default, else localhost:7443).",
        ),
    ] = None,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure",
            envvar="GPUFLEET_INSECURE",
            help="Plaintext, for a hub started with --insecure (development only).",
        ),
    ] = False,
) -> None:
    if insecure:
        os.environ["GPUFLEET_INSECURE"] = "1"  # credentials.profile() reads it
    ctx.obj = {"hub": hub or credentials.default_hub()}


@nodes_app.callback(invoke_without_command=True)
def nodes(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List the nodes: status, labels, GPUs, last heartbeat."""
    if ctx.invoked_subcommand is not None:
        return
    found = [convert.node(n) for n in client(ctx).list_nodes()]
    if as_json:
        emit_json(found)
    elif not found:
        console.print("No nodes yet: start an agent with `gpufleet-agent --hub HOST:PORT`.")
    else:
        console.print(render.nodes_table(found))


@nodes_app.command("show")
def nodes_show(ctx: typer.Context, name: str, as_json: JsonOption = False) -> None:
    """One node in detail, with its GPUs."""
    found = convert.node(client(ctx).get_node(name), with_gpus=True)
    if as_json:
        emit_json(found)
        return
    console.print(render.node_details(found))
    if found["gpus"]:
        console.print(render.gpus_table(found["gpus"], with_node=False))
    else:
        reason = found["probe_error"]
        console.print("No GPUs detected" + (f": {reason}" if reason else "."))
    if found["transitions"]:
        console.print(render.transitions_table(found["transitions"]))
    if found["events"]:
        console.print(render.events_table(found["events"]))


def gpus_view(hub: HubClient) -> Table | str:
    found = [convert.node_gpu(g) for g in hub.list_gpus()]
    return render.gpus_table(found) if found else "No GPUs detected on any node."


@app.command()
def gpus(
    ctx: typer.Context,
    as_json: JsonOption = False,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Refresh in place.")] = False,
    interval: Annotated[float, typer.Option(min=0.2, help="Seconds between refreshes.")] = 2.0,
) -> None:
    """Every GPU of the cluster: VRAM, utilization, temperature, power."""
    hub = client(ctx)
    if as_json:
        emit_json([convert.node_gpu(g) for g in hub.list_gpus()])
    elif not watch:
        console.print(gpus_view(hub))
    else:
        with Live(gpus_view(hub), console=console, auto_refresh=False) as live:
            try:
                while True:
                    time.sleep(interval)
                    live.update(gpus_view(hub), refresh=True)
            except KeyboardInterrupt:
                pass


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "gpufleet"


DEFAULT_STATE_DIR = default_state_dir()
DEFAULT_NAME = socket.gethostname().split(".")[0]


@app.command("up")
def up_command(
    listen: Annotated[str, typer.Option(help="Hub address.")] = "127.0.0.1:7443",
    state_dir: Annotated[Path, typer.Option(help="Hub and agent state.")] = DEFAULT_STATE_DIR,
    name: Annotated[str, typer.Option(help="Local node name.")] = DEFAULT_NAME,
    labels: Annotated[str, typer.Option(help="Local node labels, k=v[,k=v].")] = "",
    inventory: Annotated[Path | None, typer.Option(help="Static GPU inventory file.")] = None,
    heartbeat_interval: Annotated[float, typer.Option(min=0.1)] = 5.0,
    configs: Annotated[
        Path | None, typer.Option(help="Configurations directory (default: the hub's).")
    ] = None,
) -> None:
    """Run a hub and a local agent in the foreground (SQLite); Ctrl-C stops both."""
    config = up.UpConfig(listen, state_dir, name, labels, inventory, heartbeat_interval, configs)

    def announce(cfg: up.UpConfig) -> None:
        console.print(
            f"[bold green]gpufleet is up:[/] hub on {cfg.listen} (state in {cfg.state_dir}), "
            f"local agent '{cfg.name}', mutual TLS; hubctl is this hub's admin "
            f"({credentials.config_path()}). In another terminal: [bold]hubctl nodes[/], "
            "[bold]hubctl gpus[/], [bold]hubctl tokens create[/] to enroll more hosts. "
            "Ctrl-C stops both."
        )

    raise typer.Exit(up.run(config, announce))


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=argv, prog_name="hubctl")
    except CliError as exc:
        print(f"hubctl: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except Exception as exc:
        if os.environ.get("GPUFLEET_DEBUG"):
            raise
        print(
            f"hubctl: internal error: {type(exc).__name__}: {exc} "
            "(set GPUFLEET_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        sys.exit(1)
