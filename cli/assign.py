"""hubctl assign: preview, pin, apply, show and roll back GPU assignments."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.output import (
    CliError,
    DetachOption,
    JsonOption,
    NodeOption,
    SelectorOption,
    console,
    emit_json,
    group_json,
    node_names,
    selector,
)

if TYPE_CHECKING:
    from cli.client import HubClient

app = typer.Typer(help="GPU assignments: which node and GPU runs each service.")
ConfigOption = Annotated[str, typer.Option("--config", help="The configuration.")]
StrategyOption = Annotated[
    str,
    typer.Option(
        "--strategy",
        help="manual, vram_based, latency_optimized, isolation_first, balanced, "
        "optimal (default: the one in force, else balanced).",
    ),
]
LimitOption = Annotated[float, typer.Option("--time-limit", min=0, help="optimal: seconds.")]
StrictOption = Annotated[
    bool,
    typer.Option(
        "--no-overcommit",
        help="Strict: never place past a GPU's free room (default: when no GPU has room, "
        "over-commit one its size holds, with a warning).",
    ),
]


def connect(ctx: typer.Context) -> tuple[HubClient, Any]:
    """The hub client and an Assignments stub over its channel."""
    from cli import client
    from gpufleet.v1 import assign_pb2_grpc

    hub = client.connect(ctx)
    return hub, assign_pb2_grpc.AssignmentsStub(hub.channel)


def start(ctx: typer.Context, method: str, request: object, detach: bool, as_json: bool) -> None:
    from cli.ops_view import launch

    hub, stub = connect(ctx)
    launch(hub, getattr(stub, method), request, detach, as_json)


@app.command("preview")
def preview(
    ctx: typer.Context,
    config: ConfigOption = "",
    strategy: StrategyOption = "",
    node: NodeOption = None,
    labels: SelectorOption = None,
    no_overcommit: StrictOption = False,
    time_limit: LimitOption = 0.0,
    as_json: JsonOption = False,
) -> None:
    """Plan a configuration's services over the GPUs; changes nothing."""
    from cli import assign_view as view
    from gpufleet.v1 import assign_pb2 as pb

    request = pb.PreviewAssignmentsRequest(
        configuration=config, strategy=strategy, nodes=node_names(node),
        selector=selector(labels), time_limit_s=time_limit, no_overcommit=no_overcommit,
    )  # fmt: skip
    client, stub = connect(ctx)
    found = view.preview(client.call(stub.Preview, request))
    if as_json:
        emit_json(found)
    else:
        console().print(view.preview_view(found))


@app.command("set")
def set_(
    ctx: typer.Context,
    service: str,
    node: Annotated[str, typer.Option("--node", help="The node.")] = "",
    gpu: Annotated[
        list[int] | None,
        typer.Option("--gpu", min=0, help="GPU index (repeat for tensor parallel)."),
    ] = None,
    vram_budget: Annotated[
        float | None, typer.Option("--vram-budget", help="VRAM_BUDGET_GB for the service.")
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the pin.")] = False,
    config: ConfigOption = "",
    as_json: JsonOption = False,
) -> None:
    """Pin a service to a node and GPU(s); pins win over every strategy."""
    if not clear and (not node or not gpu):
        raise CliError(f"name where {service} goes: --node NODE --gpu INDEX", exit_code=2)
    if vram_budget is not None and vram_budget <= 0:
        raise CliError(f"invalid --vram-budget {vram_budget:g}: more than 0 GB", exit_code=2)
    from cli import assign_view as view
    from gpufleet.v1 import assign_pb2 as pb

    request = pb.SetAssignmentRequest(
        configuration=config, service=service, node=node, gpus=gpu or [], clear=clear
    )
    if vram_budget is not None:
        request.vram_budget_gb = vram_budget
    client, stub = connect(ctx)
    reply = client.call(stub.Set, request)
    warnings = [w.message for w in reply.warnings]
    if as_json:
        emit_json(
            {
                "configuration": reply.configuration,
                "cleared": reply.cleared,
                "pin": None if reply.cleared else view.assignment(reply.pin),
                "warnings": warnings,
            }
        )
        return
    if reply.cleared:
        console().print(f"{reply.configuration}: pin of {service} removed")
    else:
        console().print(
            f"{reply.configuration}: {service} pinned to "
            f"{view.where(view.assignment(reply.pin))}; "
            "`hubctl assign apply` puts it in force"
        )
    for line in warnings:
        console().print(f"[yellow]warning: {line}[/]")


@app.command("apply")
def apply(
    ctx: typer.Context,
    config: ConfigOption = "",
    strategy: StrategyOption = "",
    node: NodeOption = None,
    labels: SelectorOption = None,
    no_overcommit: StrictOption = False,
    time_limit: LimitOption = 0.0,
    detach: DetachOption = False,
    as_json: JsonOption = False,
) -> None:
    """Put the plan in force: overrides to the nodes, only changed services recreated."""
    from gpufleet.v1 import assign_pb2 as pb

    request = pb.ApplyAssignmentsRequest(
        configuration=config, strategy=strategy, nodes=node_names(node),
        selector=selector(labels), time_limit_s=time_limit, no_overcommit=no_overcommit,
    )  # fmt: skip
    start(ctx, "Apply", request, detach, as_json)


@app.callback(invoke_without_command=True)
def assignments(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """GPU assignments (`hubctl assign` alone shows those in force, as `assign show` does)."""
    group_json(ctx, as_json)
    if ctx.invoked_subcommand is None:
        show(ctx, "", as_json)


@app.command("show")
def show(ctx: typer.Context, config: ConfigOption = "", as_json: JsonOption = False) -> None:
    """The assignments in force, the previous ones and the pins."""
    from cli import assign_view as view
    from gpufleet.v1 import assign_pb2 as pb

    client, stub = connect(ctx)
    reply = client.call(stub.Show, pb.ShowAssignmentsRequest(configuration=config))
    found = [view.assignment_set(s) for s in reply.sets]
    if as_json:
        emit_json(found)
    elif not found:
        console().print("No assignments yet: `hubctl assign preview --config NAME`, then apply.")
    else:
        console().print(view.sets_table(found))


@app.command("rollback")
def rollback(
    ctx: typer.Context,
    config: ConfigOption = "",
    detach: DetachOption = False,
    as_json: JsonOption = False,
) -> None:
    """Put the previous assignments back in force on the nodes."""
    from gpufleet.v1 import assign_pb2 as pb

    start(ctx, "Rollback", pb.RollbackAssignmentsRequest(configuration=config), detach, as_json)
