"""hubctl configs: the configurations the hub can run, and checking a file before adding it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.output import CliError, JsonOption, console, emit_json, error_line

if TYPE_CHECKING:
    from cli.client import HubClient

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


def _read(file: Path) -> str:
    try:
        return file.read_bytes().decode("utf-8")
    except OSError as exc:
        raise CliError(f"cannot read {file}: {exc.strerror}", exit_code=2) from None
    except UnicodeDecodeError as exc:
        raise CliError(f"{file}: not UTF-8 (byte {exc.start}); save it as UTF-8") from None


def _checked(client: HubClient, file: Path, alone: bool) -> dict[str, Any]:
    """One file as the hub judged it: every problem (one line each) and every warning. A file
    that cannot be read is one problem (exit 2); alone, it is the command's one error line."""
    try:
        content = _read(file)
    except CliError as exc:
        if alone:
            raise
        return {"file": str(file), "valid": False, "configuration": None, "services": [],
                "problems": [str(exc)], "warnings": [], "exit_code": exc.exit_code}  # fmt: skip
    reply = client.validate(file.name, content)
    problems = [line for line in reply.error.splitlines() if line.strip()]
    if not reply.valid and not problems:
        problems = [f"{file.name}: not a valid configuration"]
    return {
        "file": str(file),
        "valid": reply.valid,
        "configuration": reply.configuration.name if reply.valid else None,
        "services": [s.name for s in reply.configuration.services] if reply.valid else [],
        "models": {s.name: s.model_ref for s in reply.configuration.services if s.model_ref}
        if reply.valid
        else {},
        "problems": problems,
        "warnings": list(reply.warnings),
        "exit_code": 0 if reply.valid else 1,
    }


@app.command("validate")
def validate(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(help="Configuration files to check.")],
    as_json: JsonOption = False,
) -> None:
    """Check configuration files before installing them: every problem, one line each
    (file, service, field, fix). Changes nothing."""
    from rich.text import Text

    from cli.client import connect

    client = connect(ctx)
    found = [_checked(client, file, len(files) == 1) for file in files]
    if as_json:
        problems = [line for f in found for line in f["problems"]]
        emit_json({
            "valid": all(f["valid"] for f in found),
            "error": problems[0] if problems else None,  # the first, as before
            "problems": problems,
            "warnings": [line for f in found for line in f["warnings"]],
            "files": [{k: v for k, v in f.items() if k != "exit_code"} for f in found],
        })  # fmt: skip
    else:
        for f in found:
            if f["valid"]:
                services = ", ".join(
                    f"{s} (model {f['models'][s]})" if s in f["models"] else s
                    for s in f["services"]
                )
                console().print(
                    Text(f"{f['file']}: valid configuration {f['configuration']} ({services})")
                )
                for warning in f["warnings"]:  # what an agent's default compose policy refuses
                    console().print(Text(f"warning: {warning}", style="yellow"))
            for problem in f["problems"]:
                error_line(problem)
    code = max(f["exit_code"] for f in found)
    if code:
        raise typer.Exit(code)
