"""hubctl models cache and uncache: a model's registry entry into nodes' caches, or out of
them. Both are operations of the hub's Registry service, followed live like a switch (or only
their id with --detach). Cheap to import: gRPC, rich and the stubs load inside the commands.
"""

from __future__ import annotations

from typing import Annotated

import typer

from cli.output import CliError, DetachOption, JsonOption, NodeOption, SelectorOption, node_names
from cli.switch import AllOption, targets

NameArg = Annotated[str, typer.Argument(help="A model's name or alias (or a registry entry).")]


def cache(
    ctx: typer.Context,
    name: NameArg,
    node: NodeOption = None,
    every: AllOption = False,
    labels: SelectorOption = None,
    detach: DetachOption = False,
    as_json: JsonOption = False,
) -> None:
    """Fetch a model's registry entry into nodes' caches ahead of a switch: resumable,
    verified by sha256, after a free-space check."""
    from cli.models_run import run
    from cli.registry import connect
    from gpufleet.v1 import registry_pb2

    request = registry_pb2.CacheModelRequest(name=name, targets=targets(node_names(node), every,
                                                                        labels))  # fmt: skip
    hub, stub = connect(ctx)
    run(hub, stub.CacheModel, request, detach, as_json)


def uncache(
    ctx: typer.Context,
    name: NameArg,
    node: NodeOption = None,
    detach: DetachOption = False,
    as_json: JsonOption = False,
) -> None:
    """Free nodes' caches of a model's registry entry; refused on a node where it runs."""
    from cli.models_run import run
    from cli.registry import connect
    from gpufleet.v1 import hub_pb2, registry_pb2

    names = node_names(node)
    if not names:
        raise CliError("name the nodes whose cache to free: --node gpu-a", exit_code=2)
    request = registry_pb2.UncacheModelRequest(name=name, targets=hub_pb2.Targets(nodes=names))
    hub, stub = connect(ctx)
    run(hub, stub.UncacheModel, request, detach, as_json)
