"""hubctl models: the model definitions the hub knows, one model's command line, and checking
or converting a model file (gpufleet's form <-> vLLM-Chill's VLLMModel) before adding it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.output import CliError, JsonOption, console, emit_json, error_line, group_json

if TYPE_CHECKING:
    from cli.client import HubClient

app = typer.Typer(
    help="Model definitions, and models running on nodes: switch, stop, running, logs."
)
ToOption = Annotated[
    str,
    typer.Option("--to", metavar="FORMAT",
                 help="gpufleet (our YAML form) or vllmmodel (vLLM-Chill's VLLMModel)."),
]  # fmt: skip


def connect(ctx: typer.Context) -> tuple[HubClient, Any]:
    """The hub client and a Models stub over its channel."""
    from cli import client
    from gpufleet.v1 import models_pb2_grpc

    hub = client.connect(ctx)
    return hub, models_pb2_grpc.ModelsStub(hub.channel)


@app.callback(invoke_without_command=True)
def models(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """The models the hub knows: engine, source, context, VRAM per GPU, GPUs needed, where
    each runs."""
    group_json(ctx, as_json)
    if ctx.invoked_subcommand is not None:
        return
    from rich.text import Text

    from cli import models_view
    from gpufleet.v1 import models_pb2

    hub, stub = connect(ctx)
    reply = hub.call(stub.ListModels, models_pb2.ListModelsRequest())
    found = [models_view.info(m) for m in reply.models]
    if as_json:
        emit_json({"models": found, "errors": list(reply.errors)})
        return
    console().print(models_view.table(found))
    for error in reply.errors:
        console().print(Text(f"not loaded: {error}", style="yellow"))


@app.command("show")
def show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A model's name or alias.")],
    as_json: JsonOption = False,
) -> None:
    """A model's definition and the exact engine command (and environment) it generates for
    one GPU on port 8000."""
    from cli import models_view
    from gpufleet.v1 import models_pb2

    hub, stub = connect(ctx)
    found = models_view.detail(hub.call(stub.GetModel, models_pb2.GetModelRequest(name=name)))
    if as_json:
        emit_json(found)
    else:
        sys.stdout.write(models_view.show(found) + "\n")


def _read(file: Path) -> str:
    try:
        return file.read_bytes().decode("utf-8")
    except OSError as exc:
        raise CliError(f"cannot read {file}: {exc.strerror or exc}", exit_code=2) from None
    except UnicodeDecodeError as exc:
        raise CliError(f"{file}: not UTF-8 (byte {exc.start}); save it as UTF-8") from None


def _checked(hub: HubClient, stub: Any, file: Path, alone: bool) -> dict[str, Any]:
    """One file as the hub judged it; a file that cannot be read is one problem (exit 2),
    and alone, the command's one error line."""
    from cli import models_view
    from gpufleet.v1 import models_pb2

    try:
        content = _read(file)
    except CliError as exc:
        if alone:
            raise
        return {"file": str(file), "valid": False, "models": [], "problems": [str(exc)],
                "exit_code": exc.exit_code}  # fmt: skip
    request = models_pb2.ValidateModelRequest(filename=file.name, content=content)
    return models_view.checked(str(file), hub.call(stub.ValidateModel, request))


@app.command("validate")
def validate(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(help="Model files to check.")],
    as_json: JsonOption = False,
) -> None:
    """Check model files before adding them: every problem, one line each (file, field, fix).
    Changes nothing."""
    hub, stub = connect(ctx)
    found = [_checked(hub, stub, file, len(files) == 1) for file in files]
    if as_json:
        problems = [line for f in found for line in f["problems"]]
        emit_json({"valid": all(f["valid"] for f in found), "problems": problems,
                   "files": [{k: v for k, v in f.items() if k != "exit_code"}
                             for f in found]})  # fmt: skip
    else:
        for f in found:
            for model in f["models"]:
                print(f"{f['file']}: valid model {model['name']} ({model['engine']}, "
                      f"{model['source']})")  # fmt: skip
            for problem in f["problems"]:
                error_line(problem)
    code = max(f["exit_code"] for f in found)
    if code:
        raise typer.Exit(code)


@app.command("convert")
def convert(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A model file: ours or a VLLMModel.")],
    to: ToOption = "gpufleet",
    as_json: JsonOption = False,
) -> None:
    """Print a model file's models as YAML in gpufleet's form or as vLLM-Chill VLLMModel
    documents (one per model, separated by ---). Changes nothing."""
    from cli import models_view
    from gpufleet.v1 import models_pb2

    if to not in models_view.FORMATS:
        raise CliError(f"--to {to!r} is not a format: use gpufleet or vllmmodel", exit_code=2)
    content = _read(file)
    hub, stub = connect(ctx)
    request = models_pb2.ValidateModelRequest(filename=file.name, content=content)
    reply = hub.call(stub.ValidateModel, request)
    text, problems = models_view.converted(reply, to)
    if as_json:
        emit_json({"file": str(file), "to": to, "yaml": text or None, "problems": problems,
                   "models": [m.model.name for m in reply.models]})  # fmt: skip
    else:
        sys.stdout.write(text)
        for problem in problems:
            error_line(problem)
    if problems:
        raise typer.Exit(1)


from cli import models_backend, models_cache, models_run  # noqa: E402  (cheap: typer only)

app.command("switch")(models_run.switch)
app.command("stop")(models_run.stop)
app.command("running")(models_run.running)
app.command("logs")(models_run.logs)
app.command("switch-backend")(models_backend.switch_backend)
app.command("cache")(models_cache.cache)
app.command("uncache")(models_cache.uncache)
