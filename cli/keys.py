"""hubctl keys: API keys of the OpenAI-compatible gateway (issue 16). `hubctl keys` lists the
valid ones (--all: revoked too), `keys create` prints a new key's secret (the hub keeps its
sha256 only: it is shown this once), `keys revoke` ends one at once on every gateway.

Cheap to import (typer only): gRPC, rich and the stubs load inside the commands.
"""

from __future__ import annotations

import re
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.output import CliError, JsonOption, console, emit_json, group_json

if TYPE_CHECKING:
    from cli.client import HubClient

# The hub's rules (hub/keys/service.py), checked here first so that bad input costs no call.
KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
MODEL_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")  # a model's name: a DNS label
NAME_RULE = "1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit"

app = typer.Typer(help="API keys of the gateway: list (the default), create, revoke.")

NameArg = Annotated[str, typer.Argument(help="The key's name, as `hubctl keys` lists it.")]
ModelsOption = Annotated[
    list[str] | None,
    typer.Option("--models", metavar="MODEL", show_default=False,
                 help="Models the key may use: a,b or repeated (default: every model)."),
]  # fmt: skip


def key_name(text: str) -> str:
    if not KEY_NAME.fullmatch(text):
        shown = f"{text[:64]!r}" if text else "(empty)"
        raise CliError(f"invalid key name {shown}: {NAME_RULE} (e.g. app1)", exit_code=2)
    return text


def model_names(items: list[str] | None) -> list[str]:
    """--models a,b (or repeated) as names, each a model's name, duplicates once."""
    found = [name.strip() for item in items or [] for name in item.split(",")]
    for name in found:
        if not MODEL_NAME.fullmatch(name):
            shown = f"{name[:64]!r}" if name else "(empty)"
            raise CliError(
                f"invalid model name {shown} in --models: a model's name, 1 to 63 lowercase "
                "letters, digits or '-' (`hubctl models` lists them)",
                exit_code=2,
            )
    return list(dict.fromkeys(found))


def connect(ctx: typer.Context) -> tuple[HubClient, Any]:
    """The hub client and an ApiKeys stub over its channel."""
    from cli import client
    from gpufleet.v1 import gateway_pb2_grpc

    hub = client.connect(ctx)
    return hub, gateway_pb2_grpc.ApiKeysStub(hub.channel)


@app.callback(invoke_without_command=True)
def keys(
    ctx: typer.Context,
    show_all: Annotated[bool, typer.Option("--all", help="Revoked keys too.")] = False,
    as_json: JsonOption = False,
) -> None:
    """The gateway's API keys: name, prefix of the secret, the models each may use, who made
    it and when, and when it was revoked (--all)."""
    group_json(ctx, as_json)
    if ctx.invoked_subcommand is not None:
        if show_all:
            raise CliError(f"--all goes with the listing alone: hubctl keys --all (not "
                           f"with {ctx.invoked_subcommand})", exit_code=2)  # fmt: skip
        return
    from cli import keys_view
    from gpufleet.v1 import gateway_pb2

    hub, stub = connect(ctx)
    reply = hub.call(stub.ListKeys, gateway_pb2.ListKeysRequest(all=show_all))
    found = [keys_view.key(key) for key in reply.keys]
    if as_json:
        emit_json(found)
    elif not found:
        print(keys_view.no_keys(show_all))
    else:
        console().print(keys_view.keys_table(found))


@app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", help="The key's name, e.g. app1.")],
    models: ModelsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a key and print its secret, shown this once."""
    from cli import keys_view
    from gpufleet.v1 import gateway_pb2

    request = gateway_pb2.CreateKeyRequest(name=key_name(name), models=model_names(models))
    hub, stub = connect(ctx)
    reply = hub.call(stub.CreateKey, request)
    if as_json:
        emit_json({"secret": reply.secret, **keys_view.key(reply.key)})
        return
    print(reply.secret)
    allowed = ", ".join(reply.key.models) or "every model"
    print(
        f"# key {reply.key.name} ({allowed}): the secret is not shown again; clients send it "
        f"as `Authorization: Bearer SECRET` (OpenAI clients: OPENAI_API_KEY=SECRET)",
        file=sys.stderr,
    )


@app.command("revoke")
def revoke(ctx: typer.Context, name: NameArg, as_json: JsonOption = False) -> None:
    """Revoke a key: every gateway refuses it at once. Its name may be used again."""
    from cli import keys_view
    from gpufleet.v1 import gateway_pb2

    request = gateway_pb2.RevokeKeyRequest(name=key_name(name))
    hub, stub = connect(ctx)
    reply = hub.call(stub.RevokeKey, request)
    if as_json:
        emit_json(keys_view.key(reply.key))
        return
    print(f"revoked key {reply.key.name} ({reply.key.prefix}...)")
