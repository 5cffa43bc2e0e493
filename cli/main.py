"""hubctl: the operator's command line. The commands live one module per resource; this
joins them under one Typer app and turns failures into one line and an exit status."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from cli import assign, coercion, configs, gpus, nodes, ops, switch, trust, up
from cli.output import CliError, error_line

coercion.install()

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Click's plain help: Typer's rich help costs ~50 ms of imports on every --help.
    rich_markup_mode=None,
    context_settings={"max_content_width": 100},
    help="Operate a gpufleet cluster through its hub.",
)


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
    if hub is None:
        from cli.credentials import default_hub

        hub = default_hub()
    ctx.obj = {"hub": hub}


app.add_typer(nodes.app, name="nodes")
nodes.app.command("remove")(trust.nodes_remove)
app.command("gpus")(gpus.gpus)
app.add_typer(configs.app, name="configs")
app.command("switch")(switch.switch)
app.command("drain")(switch.drain)
app.command("stop")(switch.stop)
app.command("status")(switch.status)
app.add_typer(ops.app, name="ops")
app.add_typer(assign.app, name="assign")
app.add_typer(trust.tokens_app, name="tokens")
app.add_typer(trust.credentials_app, name="credentials")
app.command("login")(trust.login)
app.command("whoami")(trust.whoami)
app.command("audit")(trust.audit)
app.command("up")(up.up)


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=argv, prog_name="hubctl")
    except CliError as exc:
        error_line(str(exc))
        sys.exit(exc.exit_code)
    except Exception as exc:
        if os.environ.get("GPUFLEET_DEBUG"):
            raise
        error_line(
            f"internal error: {type(exc).__name__}: {exc} (set GPUFLEET_DEBUG=1 for the traceback)"
        )
        sys.exit(1)
