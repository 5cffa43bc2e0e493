"""hubctl registry: the cluster's model registry (issue 17): list its entries, show one, pull
a Hugging Face repository into it (an operation, followed live), import local files, remove
an entry, and what the nodes' caches hold.

Cheap to import (typer only): gRPC, rich and the stubs load inside the commands.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.output import (
    CliError,
    DetachOption,
    JsonOption,
    SelectorOption,
    console,
    detached,
    emit_json,
    error_line,
    group_json,
)
from cli.output import selector as checked_selector

if TYPE_CHECKING:
    from cli.client import HubClient

LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")  # as hub/models/checks.py: RFC 1123
PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
REPO_ID = re.compile(f"{PART}/{PART}")  # as hub/registry/entries.py REPO: no '--' or '..'
REVISION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,254}")
LAYOUTS = ("files", "hf")

app = typer.Typer(
    help="The cluster's model registry: list, show, pull, import, rm, and the nodes' caches."
)
NameArg = Annotated[str, typer.Argument(help="An entry's name (a DNS label: qwen3-8b-gguf).")]


def entry_name(text: str) -> str:
    """An entry's name checked before any call: a DNS label, else one line (exit 2)."""
    value = text.strip()
    if not LABEL.fullmatch(value):
        hint = f" (lower case: {value.lower()})" if LABEL.fullmatch(value.lower()) else ""
        raise CliError(
            f"{text[:64]!r} is not an entry name: a DNS label of lower-case letters, digits and "
            f"'-', at most 63 characters, e.g. qwen3-8b-gguf{hint}",
            exit_code=2,
        )
    return value


def repo_id(option: str, text: str) -> str:
    value = text.strip()
    if not REPO_ID.fullmatch(value) or ".." in value or "--" in value:
        raise CliError(
            f"{option} {text[:64]!r} is not a repository id: ORG/NAME, e.g. Qwen/Qwen3-8B",
            exit_code=2,
        )
    return value


def connect(ctx: typer.Context) -> tuple[HubClient, Any]:
    """The hub client and a Registry stub over its channel."""
    from cli import client
    from gpufleet.v1 import registry_pb2_grpc

    hub = client.connect(ctx)
    return hub, registry_pb2_grpc.RegistryStub(hub.channel)


@app.callback(invoke_without_command=True)
def registry(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Every entry: name, source, revision, files, size, when pulled, state."""
    group_json(ctx, as_json)
    if ctx.invoked_subcommand is not None:
        return
    from cli import registry_view
    from gpufleet.v1 import registry_pb2

    hub, stub = connect(ctx)
    reply = hub.call(stub.ListEntries, registry_pb2.ListEntriesRequest())
    found = [registry_view.entry(e) for e in reply.entries]
    if as_json:
        emit_json(found)
    elif not found:
        console().print(registry_view.no_entries())
    else:
        console().print(registry_view.entries_table(found))


@app.command("show")
def show(ctx: typer.Context, name: NameArg, as_json: JsonOption = False) -> None:
    """One entry: its files (size, sha256), the models that use it, the nodes that hold it."""
    from cli import registry_view
    from gpufleet.v1 import registry_pb2

    wanted = entry_name(name)
    hub, stub = connect(ctx)
    found = registry_view.detail(hub.call(stub.GetEntry, registry_pb2.GetEntryRequest(name=wanted)))
    if as_json:
        emit_json(found)
    else:
        console().print(registry_view.show(found))


@app.command("pull")
def pull(
    ctx: typer.Context,
    name: NameArg,
    hf: Annotated[str, typer.Option(
        "--hf", metavar="ORG/REPO", help="The Hugging Face repository (the hub's HF_ENDPOINT "
        "and HF_TOKEN apply).")],
    revision: Annotated[str, typer.Option(
        "--revision", metavar="REV", help="Branch, tag or commit (default: main).")] = "",
    include: Annotated[list[str] | None, typer.Option(
        "--include", metavar="PATTERN", show_default=False,
        help="Only files matching this glob (repeatable), e.g. --include '*Q4_K_M.gguf'.")] = None,
    detach: DetachOption = False,
    as_json: JsonOption = False,
) -> None:  # fmt: skip
    """Download a Hugging Face repository into the registry on the hub: an operation with
    files, bytes, rate and ETA as progress; resumable; Ctrl-C stops watching, not the pull."""
    from gpufleet.v1 import registry_pb2

    wanted, repo = entry_name(name), repo_id("--hf", hf)
    if revision.strip() and not REVISION.fullmatch(revision.strip()):
        raise CliError(f"--revision {revision[:64]!r} is not a branch, tag or commit", 2)
    patterns = [p.strip() for p in include or []]
    if any(not p for p in patterns):
        raise CliError("empty --include pattern: give globs such as --include '*.gguf'", 2)
    request = registry_pb2.PullRequest(name=wanted, hf_repo=repo, revision=revision.strip(),
                                       include=patterns)  # fmt: skip
    hub, stub = connect(ctx)
    reply = hub.call(stub.Pull, request)
    if reply.joined:
        error_line(f"a pull of {wanted} from {repo} is under way: following it")
    if detach:
        detached(reply.operation_id, as_json)
        return
    follow(hub, reply.operation_id, as_json)


def follow(hub: HubClient, operation_id: str, as_json: bool) -> None:
    """Follow an operation live; Ctrl-C leaves it running and says how to follow it again."""
    from rich.text import Text

    from cli.ops_view import follow as follow_operation

    if not as_json:
        console().print(Text(f"operation {operation_id}"))
    try:
        follow_operation(hub, operation_id, as_json)
    except KeyboardInterrupt:
        raise CliError(
            f"stopped watching; operation {operation_id} goes on at the hub: "
            f"hubctl ops watch {operation_id} (hubctl ops cancel {operation_id} stops it)",
            exit_code=130,
        ) from None


@app.command("import")
def import_(
    ctx: typer.Context,
    name: NameArg,
    path: Annotated[Path, typer.Argument(help="A file, or a directory (every file below it).")],
    layout: Annotated[str, typer.Option(
        "--layout", metavar="LAYOUT", help="files (plain files, e.g. GGUF) or hf (the Hugging "
        "Face cache layout, for vLLM; needs --repo).")] = "files",
    repo: Annotated[str, typer.Option(
        "--repo", metavar="ORG/NAME", help="hf layout: the repository id engines ask for.")] = "",
    as_json: JsonOption = False,
) -> None:  # fmt: skip
    """Local files into the registry (air-gapped sites): hashed here, then streamed to the hub."""
    from cli import registry_import, registry_view

    wanted = entry_name(name)
    chosen = layout.strip().lower()
    if chosen not in LAYOUTS:
        raise CliError(f"--layout {layout[:32]!r} is not a layout: use files or hf", 2)
    if chosen == "hf" and not repo.strip():
        raise CliError("--layout hf needs --repo ORG/NAME, the repository id engines ask for", 2)
    if chosen == "files" and repo.strip():
        raise CliError("--repo goes only with --layout hf", 2)
    checked_repo = repo_id("--repo", repo) if repo.strip() else ""
    files = registry_import.hashed(registry_import.listing(path))
    hub, stub = connect(ctx)
    reply = registry_import.upload(hub, stub, wanted, chosen, checked_repo, files)
    found = registry_view.entry(reply.entry)
    if as_json:
        emit_json(found)
    else:
        shown = registry_view.size(found["size_bytes"])
        print(f"imported {found['name']}: {found['files']} files, {shown}, "
              f"revision {found['revision'][:12]}")  # fmt: skip


@app.command("rm")
def remove(
    ctx: typer.Context,
    name: NameArg,
    force: Annotated[bool, typer.Option(
        "--force", help="Remove it although model definitions or node caches use it.")] = False,
    as_json: JsonOption = False,
) -> None:  # fmt: skip
    """Delete an entry; refused while a model definition or a node's cache uses it."""
    from cli import registry_view
    from gpufleet.v1 import registry_pb2

    wanted = entry_name(name)
    hub, stub = connect(ctx)
    reply = hub.call(stub.RemoveEntry, registry_pb2.RemoveEntryRequest(name=wanted, force=force))
    found = registry_view.entry(reply.entry)
    if as_json:
        emit_json({**found, "warnings": list(reply.warnings)})
        return
    print(registry_view.removed_line(found))
    for warning in reply.warnings:
        error_line(f"warning: {warning}")


@app.command("caches")
def caches(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Only this entry, or a model's entry.")] = "",
    labels: SelectorOption = None,
    as_json: JsonOption = False,
) -> None:
    """What the nodes' caches hold, as their agents last reported: entry, revision, size,
    state, verified, path."""
    from cli import registry_view
    from gpufleet.v1 import registry_pb2

    wanted = name.strip()
    if name and (not wanted or len(wanted) > 253 or not wanted.isprintable() or " " in wanted):
        raise CliError(f"{name[:64]!r} is not an entry or model name", exit_code=2)
    selector = checked_selector(labels)
    hub, stub = connect(ctx)
    request = registry_pb2.ListCachesRequest(name=wanted, selector=selector)
    found = [registry_view.node_cache(c) for c in hub.call(stub.ListCaches, request).caches]
    if as_json:
        emit_json(found)
    elif not found:
        console().print(registry_view.no_caches(wanted, selector))
    else:
        console().print(registry_view.caches_table(found))
