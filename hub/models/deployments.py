"""The Models service's deployment calls: SwitchModel, StopModel, ListRunning, ModelLogs.

A switch reads the model and the configurations in the models lane (`hub.models.plan`),
checks each target node's GPUs against the deployment before anything is created (a GPU the
node does not have is refused; GPUs too few or too small are refused unless `force`, in the
assignment warnings' words), then submits a `hub.models.ops.ModelSwitchKind` operation with
the rules of a configuration switch. A llama.cpp model runs from the environment
`switch-backend` associated with it (`hub.store.backends`), and each node's previous model
deployment is regenerated from the environment its record says it was started from. A model
from the registry is generated from its entry (read here, handed to the plan as plain data);
an entry that is missing or not ready refuses the switch, and so does `no_fetch` where a node's
cache lacks the entry (one line naming the nodes and `hubctl models cache`); otherwise each such
node fetches it as the switch's first phase (`hub.registry.kinds.FetchPhase`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import grpc

from gpufleet.v1 import hub_pb2, models_pb2
from hub import convert as hub_convert
from hub.configs import RESERVED_PREFIX
from hub.models import deploy, plan
from hub.models.ops import ModelStopKind, ModelSwitchKind, problems
from hub.models.running import Cluster, registry_copy, registry_entries, running
from hub.ops import capacity
from hub.ops.kind import Request
from hub.ops.manager import OperationError
from hub.ops.remote import RemoteAgent
from hub.ops.steps import Unreachable
from hub.ops.submit import ERROR_CODES, resolve_targets
from hub.registry.entries import Entry
from hub.registry.kinds import Fetching, FetchPhase
from hub.selection import label_filter, selector
from hub.store import Node
from hub.store.backends import BackendStore
from hub.store.deployments import Deployed

Context = grpc.aio.ServicerContext[Any, Any]
T = TypeVar("T")
MAX_NAME = 253
MAX_GPUS = 64  # GPU indexes and counts of one node
DEFAULT_LINES = 100
MAX_LINES = 10_000
FORCE = "start it anyway with --force"
MAX_LISTED = 8  # nodes named in a line


async def refuse(context: Context, code: grpc.StatusCode, message: str) -> None:
    await context.abort(code, message)


def stored_plan(found: Iterable[Deployed]) -> list[plan.Stored]:
    """Deployment records as a plan regenerates them (with the environment each started from)."""
    return [plan.Stored(d.node, d.model, d.gpus, d.port, d.environment) for d in found]


class Refused(Exception):
    """Refused before anything changed: the gRPC status and one line."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class Reader(Protocol):
    """Runs fn(*args) in the models lane; its refusals raise (Refused, or a gRPC abort)."""

    def __call__(self, fn: Callable[..., T], *args: Any) -> Awaitable[T]: ...


@dataclass(frozen=True)
class SwitchAsk:
    """A model switch as SwitchModel (or the gateway's scale from zero) asks for it."""

    name: str  # the model's name or alias
    nodes: list[str]  # where, each one known
    known: list[str]  # every known node
    gpus: tuple[int, ...] = ()
    gpu_count: int = 0
    port: int = 0
    force: bool = False
    check: bool = False
    serial: int = 0
    max_fail_percent: float = 0.0
    rollback: bool = True
    no_fetch: bool = False  # a registry model a node's cache lacks: refused, not fetched


def listed(nodes: list[str]) -> str:
    more = f" and {len(nodes) - MAX_LISTED} more" if len(nodes) > MAX_LISTED else ""
    return ", ".join(nodes[:MAX_LISTED]) + more


def fetch_phase(found: plan.Plan, entries: dict[str, Entry], fetching: Fetching | None,
                ask: SwitchAsk) -> FetchPhase | None:  # fmt: skip
    """The switch's fetch phase for a model from the registry (None for another source, or a
    hub that keeps no caches); Refused with `no_fetch` where a node's cache lacks the entry."""
    if found.entry is None or fetching is None:
        return None
    entry = entries[found.entry.name]
    lacking = fetching.lacking(entry, ask.nodes)
    if lacking and ask.no_fetch:
        model = found.model.name
        raise Refused(grpc.StatusCode.FAILED_PRECONDITION,
                      f"model {model}: registry entry {entry.name} is not in the model cache of "
                      f"{listed(lacking)} (--no-fetch): `hubctl models cache {model} --node "
                      f"{lacking[0]}` first, or switch without --no-fetch")  # fmt: skip
    return FetchPhase(entry, fetching)


async def switch(cluster: Cluster, models_dir: Path, read: Reader, ask: SwitchAsk,
                 fetching: Fetching | None = None) -> str:  # fmt: skip
    """Plan and submit a model switch: the operation's id, or Refused (nothing created).
    `fetching`: the registry's store and the nodes' caches, for a model from the registry."""
    nodes = ask.nodes
    rows = {node.name: node for node, _ in await cluster.db.call(cluster.store.list_nodes)}
    stored = {d.node: d for d in await cluster.db.call(cluster.deployments.all, nodes)}
    current = {n: d for n, d in stored.items() if n in rows and cluster.runs(rows[n]) == d.project}
    associated = await cluster.db.call(BackendStore(cluster.db.engine).all)
    environments = plan.environments({m: a.environment for m, a in associated.items()})
    entries = await registry_entries(cluster.db)
    copies = tuple(registry_copy(e) for e in entries.values())
    asked = plan.Request(ask.name, ask.gpus, ask.gpu_count, ask.port, cluster.vllm_image,
                         environments, copies)  # fmt: skip
    runs = {cluster.runs(rows[n]) for n in nodes if n in rows} - {""}
    others = sorted(name for name in runs if not name.startswith(RESERVED_PREFIX))
    try:
        found = await read(plan.plan, models_dir, cluster.configs_dir, asked,
                           stored_plan(current.values()), others)  # fmt: skip
    except plan.EntryUnusable as exc:
        raise Refused(grpc.StatusCode.FAILED_PRECONDITION, str(exc)) from None
    except deploy.DeployError as exc:
        raise Refused(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
    fetch = fetch_phase(found, entries, fetching, ask)
    warnings = await capacity_of(cluster, found, ask)
    planned = {n: cluster.snapshot(rows[n]) for n in nodes if n in rows}
    kind = ModelSwitchKind(
        found.target, found.model.name, found.model.engine, found.where, cluster.remember,
        found.configurations, found.previous, current, planned,
        rollback=ask.rollback, warnings=warnings, fetch=fetch,
    )  # fmt: skip
    return await submit(cluster, Request(kind, nodes, ask.serial, ask.max_fail_percent,
                                         ask.check), ask.known)  # fmt: skip


async def capacity_of(cluster: Cluster, found: plan.Plan, ask: SwitchAsk) -> dict[str, list[str]]:
    """Each node's capacity warnings; Refused (nothing created) when a node lacks a GPU named
    with --gpus, or cannot hold the model (no GPUs, fewer than --gpu-count, too small) and the
    request neither forces nor checks."""
    gpus: dict[str, list[capacity.NodeGpu]] = {node: [] for node in ask.nodes}
    for g in await cluster.db.call(cluster.store.placement_gpus, ask.nodes):
        gpus[g.node].append(capacity.node_gpu(g))
    refused, short = [], {}
    for node in ask.nodes:
        missing, lines = problems(found.model.name, node, gpus[node], found.where,
                                  found.vram_gb, bool(ask.gpus), ask.gpu_count)  # fmt: skip
        refused += missing
        if lines:
            short[node] = lines
    if refused:
        raise Refused(grpc.StatusCode.FAILED_PRECONDITION, "\n".join(refused))
    if short and not (ask.force or ask.check):
        lines = [line for node_lines in short.values() for line in node_lines]
        raise Refused(grpc.StatusCode.FAILED_PRECONDITION, "\n".join([*lines, FORCE]))
    return short


async def stop(cluster: Cluster, project: str, nodes: list[str], known: list[str]) -> str:
    """Submit a model stop of `project` on `nodes`: the operation's id, or Refused."""
    return await submit(cluster, Request(ModelStopKind(project, cluster.remember), nodes), known)


async def submit(cluster: Cluster, request: Request, known: list[str]) -> str:
    try:
        return await cluster.manager.submit(request, known)
    except OperationError as exc:
        raise Refused(ERROR_CODES[exc.kind], str(exc)) from None


class DeploymentsApi:
    """Mixed into ModelsService, which gives `_read` (a models-lane call) and these."""

    models_dir: Path
    cluster: Cluster | None
    fetching: Fetching | None  # the registry's store and the nodes' caches

    if TYPE_CHECKING:  # given by ModelsService

        async def _read(self, context: Context, fn: Callable[..., T], *args: Any) -> T: ...

    async def _cluster(self, context: Context) -> Cluster:
        if self.cluster is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "this hub runs no models")
            raise AssertionError("abort raises")
        return self.cluster

    async def _name(self, context: Context, name: str) -> str:
        if not name or len(name) > MAX_NAME or not name.isprintable():
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"model name {name[:64]!r} is not one: give a model's name or alias "
                "(`hubctl models` lists them)",
            )
        return name

    async def _nodes(self, cluster: Cluster) -> dict[str, Node]:
        return {node.name: node for node, _ in await cluster.db.call(cluster.store.list_nodes)}

    async def SwitchModel(
        self, request: models_pb2.SwitchModelRequest, context: Context
    ) -> hub_pb2.OperationRef:
        cluster = await self._cluster(context)
        name = await self._name(context, request.name)
        if not 0 <= request.max_fail_percent <= 100:
            await refuse(context, grpc.StatusCode.INVALID_ARGUMENT,
                         "max_fail_percent must be between 0 and 100")  # fmt: skip
        if (
            len(request.gpus) > MAX_GPUS
            or any(g >= MAX_GPUS for g in request.gpus)
            or (request.gpu_count > MAX_GPUS)
        ):
            await refuse(context, grpc.StatusCode.INVALID_ARGUMENT,
                         f"GPU indexes and counts go up to {MAX_GPUS - 1}")  # fmt: skip
        nodes, known = await resolve_targets(cluster.db, cluster.store, request.targets, context)
        unknown = [node for node in nodes if node not in known]
        if unknown:  # before their GPUs are looked for
            await refuse(context, grpc.StatusCode.NOT_FOUND,
                         f"unknown node {', '.join(unknown)}: `hubctl nodes` lists the known "
                         "nodes")  # fmt: skip

        async def read(fn: Callable[..., T], *args: Any) -> T:
            return await self._read(context, fn, *args)

        asked = SwitchAsk(name, nodes, known, tuple(request.gpus), request.gpu_count,
                          request.port, request.force, request.check, request.serial,
                          request.max_fail_percent, not request.no_rollback,
                          request.no_fetch)  # fmt: skip
        try:
            operation_id = await switch(cluster, self.models_dir, read, asked, self.fetching)
        except Refused as exc:
            await context.abort(exc.code, str(exc))
            raise
        return hub_pb2.OperationRef(id=operation_id)

    async def _project(self, context: Context, name: str, cluster: Cluster) -> str:
        """The project of the model `name` names: one a node runs or a record names (its
        file may no longer load: removed, renamed, invalid), else the model file's (NOT_FOUND
        with close names)."""
        project = deploy.project(name)
        rows = await self._nodes(cluster)
        if any(cluster.runs(node) == project for node in rows.values()):
            return project
        if any(d.project == project for d in await cluster.db.call(cluster.deployments.all)):
            return project
        model = await self._read(context, plan.find, self.models_dir, name)
        return deploy.project(model.name)

    async def StopModel(
        self, request: models_pb2.StopModelRequest, context: Context
    ) -> hub_pb2.OperationRef:
        cluster = await self._cluster(context)
        project = await self._project(context, await self._name(context, request.name), cluster)
        model = deploy.model_of(project)
        rows = await self._nodes(cluster)
        targets = request.targets
        chosen = bool(targets.nodes or targets.all or targets.selector)
        if chosen:
            nodes, known = await resolve_targets(cluster.db, cluster.store, targets, context)
            unknown = [node for node in nodes if node not in rows]
            if unknown:
                await refuse(context, grpc.StatusCode.NOT_FOUND,
                             f"unknown node {', '.join(unknown)}: `hubctl nodes` lists the "
                             "known nodes")  # fmt: skip
            named = set(targets.nodes)
            for node in nodes:
                runs = cluster.runs(rows[node]) if node in rows else ""
                if node in named and runs != project:
                    what = f"it runs {runs}" if runs else "it runs nothing"
                    await refuse(context, grpc.StatusCode.FAILED_PRECONDITION,
                                 f"node {node} does not run model {model} ({what}): "
                                 "`hubctl models running` shows where it runs")  # fmt: skip
            nodes = [n for n in nodes if n in rows and cluster.runs(rows[n]) == project]
        else:
            known = list(rows)
            nodes = [n for n, node in rows.items() if cluster.runs(node) == project]
        if not nodes:
            await refuse(context, grpc.StatusCode.FAILED_PRECONDITION,
                         f"model {model} runs on no node{' of those' if chosen else ''}: "
                         "`hubctl models running` shows what runs")  # fmt: skip
        try:
            operation_id = await stop(cluster, project, nodes, known)
        except Refused as exc:
            await context.abort(exc.code, str(exc))
            raise
        return hub_pb2.OperationRef(id=operation_id)

    async def ListRunning(
        self, request: models_pb2.ListRunningRequest, context: Context
    ) -> models_pb2.ListRunningResponse:
        cluster = await self._cluster(context)
        keep = label_filter(await selector(request.selector, context))
        nodes = [
            node for node, _ in await cluster.db.call(cluster.store.list_nodes, "", None, keep)
        ]
        stored = {d.node: d for d in await cluster.db.call(cluster.deployments.all)}
        found = running(nodes, stored, cluster.runs, cluster.connected, cluster.advertised)
        if request.name:
            name = await self._name(context, request.name)
            if name not in {r.model for r in found}:  # an alias, or a model nowhere
                name = deploy.model_of(await self._project(context, name, cluster))
            found = [r for r in found if r.model == name]
        return models_pb2.ListRunningResponse(models=[
            models_pb2.RunningModel(
                node=r.node, model=r.model, engine=r.engine, gpus=list(r.gpus), state=r.state,
                since=hub_convert.timestamp(r.since), endpoint=r.endpoint, message=r.message,
                project=r.project,
            ) for r in found
        ])  # fmt: skip

    async def ModelLogs(
        self, request: models_pb2.ModelLogsRequest, context: Context
    ) -> models_pb2.ModelLogsResponse:
        cluster = await self._cluster(context)
        name = await self._name(context, request.name)
        if not request.node:
            await refuse(context, grpc.StatusCode.INVALID_ARGUMENT,
                         "name the node: --node NODE (`hubctl models running` shows where "
                         "the model runs)")  # fmt: skip
        if request.lines > MAX_LINES:
            await refuse(context, grpc.StatusCode.INVALID_ARGUMENT,
                         f"--lines goes up to {MAX_LINES}, got {request.lines}")  # fmt: skip
        project = await self._project(context, name, cluster)
        node = await cluster.db.call(cluster.store.get_node, request.node)
        if node is None:
            await refuse(context, grpc.StatusCode.NOT_FOUND,
                         f"no node named {request.node[:64]!r}: `hubctl nodes` lists the "
                         "known nodes")  # fmt: skip
            raise AssertionError("abort raises")
        session = cluster.registry.get(request.node)
        if session is None:
            await refuse(context, grpc.StatusCode.FAILED_PRECONDITION,
                         f"node {request.node} is not connected: its agent is down, so its "
                         "logs cannot be read now")  # fmt: skip
            raise AssertionError("abort raises")
        # Whatever the node runs now: the log of a switch that failed and rolled back is the
        # one an operator needs; the agent answers one line for a project it never had.
        agent = RemoteAgent(session, "logs")
        try:
            step, text = await agent.tail_log(project, request.lines or DEFAULT_LINES)
        except Unreachable as exc:
            await refuse(context, grpc.StatusCode.FAILED_PRECONDITION, str(exc))
            raise
        if step.failed:
            why = step.message or "the log could not be read"
            await refuse(
                context, grpc.StatusCode.FAILED_PRECONDITION, f"node {request.node}: {why}"
            )
        return models_pb2.ModelLogsResponse(node=request.node, project=project, log=text)
