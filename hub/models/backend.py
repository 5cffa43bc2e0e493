"""`hubctl models switch-backend`: the Models service's SwitchBackend, and its decisions (pure).

A llama.cpp model is associated with an environment, its backend (`vulkan`) or one version of
it (`vulkan-0.3.36`): every later start of the model runs its process from there
(`hub.models.plan`, `hub.models.deploy.on_environment`). The nodes: those named (each known and
connected), else every connected node that runs the model (one that is down is left out: it
picks the association up when it next starts the model). A node that has no ready environment of the
kind builds it first (`instant_switch` false); a node that runs the model restarts it from the
new environment unless `no_restart`. Both happen in one `backend-switch` operation
(`hub.models.backend_ops`); when nothing needs either, only the association changes, at once.
Back to the definition's own backend without a version, the association is forgotten.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import grpc

from gpufleet import envnames
from gpufleet.v1 import models_pb2
from hub.envs.view import EnvBuild
from hub.models import catalog, convert, deploy, load, plan
from hub.models.backend_ops import BackendSwitchKind
from hub.models.deployments import stored_plan
from hub.models.load import ModelError
from hub.models.ops import ModelSwitchKind, problems
from hub.models.running import Cluster, registry_copy, registry_entries
from hub.models.schema import Model, RegistryCopy
from hub.ops import capacity
from hub.ops.kind import Request
from hub.ops.submit import resolve_targets, submitted
from hub.store import Database, Node
from hub.store.backends import BackendStore
from hub.store.deployments import Deployed

log = logging.getLogger(__name__)
Context = grpc.aio.ServicerContext[Any, Any]
T = TypeVar("T")
BACKENDS = envnames.BACKENDS  # cuda, vulkan, rocm, cpu
FORCE = "switch it anyway with --force"
CODES = {
    "invalid": grpc.StatusCode.INVALID_ARGUMENT,
    "not_found": grpc.StatusCode.NOT_FOUND,
    "conflict": grpc.StatusCode.FAILED_PRECONDITION,
}


class Refused(ValueError):
    """The switch cannot be done as asked: one line; `kind` is one of CODES."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def environment_of(backend: str, version: str) -> str:
    """The environment named: the backend, or BACKEND-VERSION (Refused "invalid": why not)."""
    try:
        envnames.check_backend(backend)
        return envnames.env_name(backend, envnames.check_version(version)) if version else backend
    except ValueError as exc:  # the rule agents and hubctl follow too
        raise Refused("invalid", str(exc)) from None


@dataclass(frozen=True)
class NodeView:
    """A chosen node as the switch sees it."""

    name: str
    known: bool
    connected: bool
    runs: bool  # it runs the model now
    ready: bool  # the environment is ready and verified there (NodeEnvs.ready)


@dataclass(frozen=True)
class Decision:
    environment: str
    nodes: tuple[str, ...]  # the operation's nodes (none: the association alone, at once)
    restarts: tuple[str, ...]  # those that restart the model
    builds: tuple[str, ...]  # those that build the environment first
    forget: bool  # back to the definition's own backend: the association goes
    left_out: tuple[str, ...] = ()  # not named, down: the association reaches them at a start

    @property
    def instant(self) -> bool:
        return not self.builds

    def build_lines(self) -> list[str]:
        return [f"{node} has no ready {self.environment} environment" for node in self.builds]


def decide(own_backend: str, environment: str, nodes: Sequence[NodeView],
           no_restart: bool, named: bool = True) -> Decision:  # fmt: skip
    """What the switch does on `nodes` (Refused: an unknown or disconnected node). Not
    `named` (every node that runs the model): the disconnected ones are left out."""
    left_out = () if named else tuple(n.name for n in nodes if not n.connected)
    nodes = [n for n in nodes if n.name not in left_out]
    unknown = [n.name for n in nodes if not n.known]
    if unknown:
        raise Refused("not_found", f"unknown node {', '.join(unknown)}: `hubctl nodes` lists "
                                   "the known nodes")  # fmt: skip
    down = [n.name for n in nodes if not n.connected]
    if down:
        raise Refused("conflict", f"node {', '.join(down)} is not connected (its agent is down): "
                                  "start its agent, or leave the node out")  # fmt: skip
    builds = tuple(n.name for n in nodes if not n.ready)
    restarts = () if no_restart else tuple(n.name for n in nodes if n.runs)
    chosen = tuple(n.name for n in nodes if n.name in builds or n.name in restarts)
    return Decision(environment, chosen, restarts, builds, environment == own_backend, left_out)


def placements(backend: str, restarts: Sequence[str], stored: Mapping[str, Deployed],
               image: str, environment: str, model: str,
               entries: tuple[RegistryCopy, ...] = ()) -> dict[str, plan.Request]:  # fmt: skip
    """Per restarted node, the request that restarts it as it runs: its recorded GPUs (none on
    the cpu; the first GPU when it ran on the cpu and now needs one) and port; `entries`, the
    registry's, for a model served from it."""
    found = {}
    for node in restarts:
        d = stored.get(node)
        gpus = d.gpus if d is not None and backend != "cpu" else ()
        port = d.port if d is not None else 0
        found[node] = plan.Request(model, gpus, 0, port, image, ((model, environment),), entries)
    return found


def plans(models_dir: Path, name: str, requests: Mapping[str, plan.Request],
          stored: Sequence[plan.Stored]) -> tuple[Model, dict[str, plan.Plan]]:  # fmt: skip
    """The model, and per node the plan of its restart (a worker of the models lane; NotFound,
    DeployError). A model that is not llama.cpp gets no plans."""
    models, _ = load.load_directory(models_dir)
    try:
        model = load.find(models, name)
    except ModelError as exc:
        raise catalog.NotFound(str(exc)) from None
    if model.llama_cpp is None:
        return model, {}
    found: dict[plan.Request, plan.Plan] = {}
    for request in requests.values():
        if request not in found:
            found[request] = plan.planned(models, model, request, stored, {})
    return model, {node: found[request] for node, request in requests.items()}


@dataclass(frozen=True)
class Association:
    """Writes (or, with no environment, forgets) the model's association, in the background."""

    db: Database
    model: str
    environment: str  # "": back to the definition's backend
    since: datetime

    def __call__(self) -> None:
        store = BackendStore(self.db.engine)
        if self.environment:
            self.db.submit(store.put, self.model, self.environment, self.since)
        else:
            self.db.submit(store.forget, self.model)


async def refuse(context: Context, exc: Refused) -> None:
    await context.abort(CODES[exc.kind], str(exc))


class BackendApi:
    """Mixed into ModelsService, which gives `_read`, `_cluster`, `_name` and `_nodes`."""

    models_dir: Path

    if TYPE_CHECKING:  # given by ModelsService and DeploymentsApi

        async def _read(self, context: Context, fn: Callable[..., T], *args: Any) -> T: ...
        async def _cluster(self, context: Context) -> Cluster: ...
        async def _name(self, context: Context, name: str) -> str: ...
        async def _nodes(self, cluster: Cluster) -> dict[str, Node]: ...

    async def SwitchBackend(
        self, request: models_pb2.SwitchBackendRequest, context: Context
    ) -> models_pb2.SwitchBackendResponse:
        cluster = await self._cluster(context)
        name = await self._name(context, request.name)
        try:
            environment = environment_of(request.backend, request.version)
        except Refused as exc:
            await refuse(context, exc)
            raise
        model = await self._read(context, plan.find, self.models_dir, name)
        if model.llama_cpp is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                f"model {model.name} runs on {model.engine}: switch-backend "
                                "moves llama.cpp models only")  # fmt: skip
            raise AssertionError("abort raises")
        project = deploy.project(model.name)
        rows = await self._nodes(cluster)
        targets = request.targets
        named = bool(targets.nodes or targets.all or targets.selector)
        if named:
            nodes, known = await resolve_targets(cluster.db, cluster.store, targets, context)
        else:
            known = list(rows)
            nodes = [n for n, row in rows.items() if cluster.runs(row) == project]
        views = [NodeView(n, n in rows, n in rows and cluster.connected(rows[n]),
                          n in rows and cluster.runs(rows[n]) == project,
                          cluster.envs.ready(n, environment)) for n in nodes]  # fmt: skip
        try:
            decision = decide(model.llama_cpp.backend, environment, views, request.no_restart,
                              named)  # fmt: skip
        except Refused as exc:
            await refuse(context, exc)
            raise
        for node in decision.left_out:
            log.info("switch-backend %s: node %s is not connected: it runs the model from %s "
                     "when it next starts it", model.name, node, environment)  # fmt: skip
        kept = "" if decision.forget else environment
        associate = Association(cluster.db, model.name, kept, datetime.now(UTC))
        if not decision.nodes:
            associate()
            return convert.backend_switched(decision, "")
        switches = await self._switches(context, cluster, model, decision, request.force, rows)
        kind = BackendSwitchKind(
            project, EnvBuild(request.backend, request.version), cluster.envs,
            frozenset(decision.builds), switches, associate,
        )  # fmt: skip
        ref = await submitted(cluster.manager, context, Request(kind, list(decision.nodes)), known)
        return convert.backend_switched(decision, ref.id)

    async def _switches(self, context: Context, cluster: Cluster, model: Model,
                        decision: Decision, force: bool,
                        rows: dict[str, Node]) -> dict[str, ModelSwitchKind]:  # fmt: skip
        """Per restarted node, its model switch; refused (nothing created) when a node cannot
        hold the model on the new backend and `force` is not given."""
        if not decision.restarts:
            return {}
        project = deploy.project(model.name)
        stored = {
            d.node: d
            for d in await cluster.db.call(cluster.deployments.all, list(decision.restarts))
            if d.project == project
        }
        backend = deploy.backend_of(decision.environment)
        entries = tuple(registry_copy(e) for e in (await registry_entries(cluster.db)).values())
        asked = placements(backend, decision.restarts, stored, cluster.vllm_image,
                           decision.environment, model.name, entries)  # fmt: skip
        try:
            _, found = await self._read(context, plans, self.models_dir, model.name, asked,
                                        stored_plan(stored.values()))  # fmt: skip
        except deploy.DeployError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise
        gpus: dict[str, list[capacity.NodeGpu]] = {node: [] for node in decision.restarts}
        for g in await cluster.db.call(cluster.store.placement_gpus, list(decision.restarts)):
            gpus[g.node].append(capacity.node_gpu(g))
        short = {}
        for node, p in found.items():
            _, lines = problems(model.name, node, gpus[node], p.where, p.vram_gb, named=False)
            if lines:
                short[node] = lines
        if short and not force:
            lines = [line for node_lines in short.values() for line in node_lines]
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "\n".join([*lines, FORCE]))
        return {
            node: ModelSwitchKind(
                p.target, model.name, model.engine, p.where, cluster.remember, {}, p.previous,
                stored, {node: cluster.snapshot(rows[node])}, warnings=short,
            )
            for node, p in found.items()
        }  # fmt: skip
