"""hubctl: the operator's command line. The commands live one module per resource; this
joins them under one Typer app and turns failures into one line and an exit status."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from cli import (
    assign,
    coercion,
    configs,
    envs,
    gpus,
    keys,
    models,
    nodes,
    ops,
    registry,
    switch,
    trust,
    up,
    usage,
)
from cli.output import CliError, error_line, first_line

coercion.install()
MAX_ADDRESS = 261  # a 253-character host name, brackets and a port

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
            help="The hub to talk to (default: the config file's default, else 127.0.0.1:7443); "
            "may also follow the command: hubctl login --hub H --token T.",
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
    if len(hub) > MAX_ADDRESS or not hub.isprintable():
        raise CliError(
            f"--hub {hub[:64]!r}... is not HOST:PORT: a host name of at most 253 characters "
            "and a port, e.g. hub.example:7443",
            exit_code=2,
        )
    ctx.obj = {"hub": hub}


app.add_typer(nodes.app, name="nodes")
nodes.app.command("remove")(trust.nodes_remove)
app.command("gpus")(gpus.gpus)
app.command("usage")(usage.usage)
app.add_typer(configs.app, name="configs")
app.add_typer(models.app, name="models")
app.add_typer(envs.app, name="envs")
app.add_typer(registry.app, name="registry")
app.command("switch")(switch.switch)
app.command("drain")(switch.drain)
app.command("stop")(switch.stop)
app.command("status")(switch.status)
app.add_typer(ops.app, name="ops")
app.add_typer(assign.app, name="assign")
app.add_typer(trust.tokens_app, name="tokens")
app.add_typer(trust.credentials_app, name="credentials")
app.add_typer(keys.app, name="keys")
app.command("login")(trust.login)
app.command("whoami")(trust.whoami)
app.command("audit")(trust.audit)
app.command("up")(up.up)


def usage_error(exc: Exception) -> str | None:
    """Click's errors (bad option values, unknown commands: Typer's own copy of click or
    click itself) as hubctl's one line; None for anything else."""
    if not hasattr(exc, "format_message") or not isinstance(getattr(exc, "exit_code", 0), int):
        return None
    context = getattr(exc, "ctx", None)
    where = f" (see `{context.command_path} --help`)" if context is not None else ""
    return first_line(exc.format_message()) + where


GLOBAL_FLAGS = ("--insecure",)
LOCAL_ONLY = ("up",)  # commands that take no hub address: nothing is moved for them


def hoist(argv: list[str]) -> list[str]:
    """hubctl's own options (--hub, --insecure) moved before the command wherever they are
    given, so `hubctl login --hub H --token T` is `hubctl --hub H login --token T`.
    Nothing after `--` moves."""
    front: list[str] = []
    rest: list[str] = []
    command_at: int | None = None  # where the command word is in `rest`
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest += argv[i:]
            break
        if command_at is None and not arg.startswith("-") and arg in LOCAL_ONLY:
            return argv  # `hubctl up` serves a hub: --hub/--insecure mean nothing there
        taken = 2 if arg == "--hub" else 1
        if arg == "--hub" and i + 1 == len(argv):
            raise CliError("--hub needs a value: HOST:PORT, e.g. --hub hub.example:7443", 2)
        if arg == "--hub" or arg.startswith("--hub=") or arg in GLOBAL_FLAGS:
            (front if command_at is not None else rest).extend(argv[i : i + taken])
            i += taken
            continue
        if command_at is None and not arg.startswith("-"):
            command_at = len(rest)
        rest.append(arg)
        i += 1
    if command_at is None:
        return front + rest
    # Just before the command: given after it, they win over the same options given before.
    return rest[:command_at] + front + rest[command_at:]


def main(argv: list[str] | None = None) -> None:
    try:
        args = hoist(sys.argv[1:] if argv is None else argv)
        code = app(args=args, prog_name="hubctl", standalone_mode=False)
    except CliError as exc:
        error_line(str(exc))
        sys.exit(exc.exit_code)
    except Exception as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":
            exc.show()  # type: ignore[attr-defined]  # `hubctl` alone: its help
            sys.exit(2)
        if type(exc).__name__ == "Abort":  # Ctrl-C or EOF at a prompt
            error_line("aborted")
            sys.exit(130)
        line = usage_error(exc)
        if line is not None:
            error_line(line)
            sys.exit(getattr(exc, "exit_code", 2))
        if os.environ.get("GPUFLEET_DEBUG"):
            raise
        error_line(
            f"internal error: {type(exc).__name__}: {exc} (set GPUFLEET_DEBUG=1 for the traceback)"
        )
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)  # typer.Exit(n) comes back as n
