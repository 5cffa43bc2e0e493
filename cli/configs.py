"""hubctl configs: the configurations the hub can run, and checking a file before adding it."""

from __future__ import annotations

from pathlib import Path

import typer

from cli.output import CliError, JsonOption, console, emit_json, error_line

app = typer.Typer(help="Named configurations: compose projects with x-gpufleet.")


@app.callback(invoke_without_command=True)
def configs(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """The configurations the hub knows, with their use case and services."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.text import Text

    from cli import convert, render
    from cli.client import connect

    reply = connect(ctx).configurations()
    found = [convert.configuration(c) for c in reply.configurations]
    if as_json:
        emit_json({"configurations": found, "errors": list(reply.errors)})
        return
    console().print(render.configs_table(found))
    for error in reply.errors:
        console().print(Text(f"not loaded: {error}", style="yellow"))


@app.command("validate")
def validate(ctx: typer.Context, file: Path, as_json: JsonOption = False) -> None:
    """Check a configuration file before installing it; changes nothing."""
    from cli.client import connect

    try:
        content = file.read_bytes().decode("utf-8")
    except OSError as exc:
        raise CliError(f"cannot read {file}: {exc.strerror}", exit_code=2) from None
    except UnicodeDecodeError as exc:
        raise CliError(f"{file}: not UTF-8 (byte {exc.start}); save it as UTF-8") from None
    reply = connect(ctx).validate(file.name, content)
    if as_json:
        emit_json({"valid": reply.valid, "error": reply.error or None,
                   "warnings": list(reply.warnings)})  # fmt: skip
    elif reply.valid:
        services = ", ".join(s.name for s in reply.configuration.services)
        console().print(f"{file}: valid configuration {reply.configuration.name} ({services})")
        from rich.text import Text

        for warning in reply.warnings:  # what an agent's default compose policy refuses
            console().print(Text(f"warning: {warning}", style="yellow"))
    if not reply.valid:
        if not as_json:
            error_line(reply.error)
        raise typer.Exit(1)
