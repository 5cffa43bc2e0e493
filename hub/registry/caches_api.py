"""The Registry service's node cache calls: CacheModel, UncacheModel, ListCaches.

A name is a model's name or alias (its source names the entry) or an entry's name. Caching is
an operation of kind model-cache (`hub.registry.kinds`: each node's agent fetches the entry,
with progress), refused before anything is created when the entry is missing or not ready.
Uncaching (model-uncache) is refused, naming the node, where a model served from the entry
runs. ListCaches is what the agents last reported (`hub.registry.caches.NodeCaches`); a node
that is down keeps what it said last, flagged not connected.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import grpc

from gpufleet.v1 import hub_pb2, registry_pb2
from hub.models import catalog, deploy, plan
from hub.models.load import ModelError
from hub.models.running import runs
from hub.models.schema import RegistrySource
from hub.ops.kind import Request
from hub.ops.manager import OperationManager
from hub.ops.submit import resolve_targets, submitted
from hub.registry.caches import NodeCaches
from hub.registry.convert import cache_to_proto
from hub.registry.entries import Entry
from hub.registry.kinds import ModelCacheKind, ModelUncacheKind
from hub.registry.store import ObjectStore
from hub.selection import label_filter, selector
from hub.sessions import SessionRegistry
from hub.store import Database, Store
from hub.store.registry import RegistryStore
from hub.work import Busy, Overrun, Work, WorkerDied

Context = grpc.aio.ServicerContext[Any, Any]
T = TypeVar("T")
MAX_NAME = 253
MODELS_LIMIT_S = 30.0
NOT_READY = {
    "pulling": "is being pulled: wait for its `hubctl registry pull` (`hubctl ops` shows it)",
    "failed": "failed to pull: `hubctl registry pull {name} --hf ORG/NAME` again",
}


class CachesApi:
    """Mixed into RegistryService, whose __init__ sets these attributes: db, nodes (the hub's
    hub.store.Store), sessions (SessionRegistry), manager (OperationManager), caches
    (NodeCaches), objects (ObjectStore), models_dir, work (hub.work.Work, or None)."""

    db: Database
    nodes: Store  # the hub's node store
    sessions: SessionRegistry  # the connected agents
    manager: OperationManager
    caches: NodeCaches
    objects: ObjectStore
    models_dir: Path | None
    work: Work | None  # the hub's models lane; None: a thread

    async def _models(self, context: Context, fn: Callable[..., T], *args: Any) -> T:
        """fn(*args) in the models lane; NotFound passes through, other failures abort."""
        try:
            if self.work is None:
                return await asyncio.to_thread(fn, *args)
            return await self.work.models.run(fn, *args, limit_s=MODELS_LIMIT_S,
                                              hint="make the model files smaller")  # fmt: skip
        except (Busy, Overrun, WorkerDied) as exc:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
            raise
        except catalog.NotFound:
            raise
        except ModelError as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
            raise

    async def _entry_name(self, context: Context, name: str) -> str:
        """The entry `name` means: a model's registry source (by name or alias), else an
        entry of that name (NOT_FOUND naming both listings when neither)."""
        if not name or len(name) > MAX_NAME or not name.isprintable():
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"name {name[:64]!r} is not one: give a model's or a registry "
                                "entry's name (`hubctl models`, `hubctl registry`)")  # fmt: skip
        source = None
        if self.models_dir is not None:
            try:
                model = await self._models(context, plan.find, self.models_dir, name)
                source = model.source
            except catalog.NotFound:
                pass
        if isinstance(source, RegistrySource):
            return source.name
        if await self.db.call(RegistryStore(self.db.engine).get, name) is not None:
            return name
        if any(held.entry == name for _, views in self.caches.items() for held in views):
            return name  # gone from the registry, still on nodes
        if source is not None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                f"model {name} is served from {source.describe()}, not from the "
                                "registry: only a model whose source is {registry: NAME} is "
                                "cached on nodes")  # fmt: skip
        await context.abort(grpc.StatusCode.NOT_FOUND,
                            f"no model or registry entry named {name[:64]!r}: `hubctl models` "
                            "and `hubctl registry` list them")  # fmt: skip
        raise AssertionError("abort raises")

    async def _ready(self, context: Context, name: str) -> Entry:
        entry = await self.db.call(RegistryStore(self.db.engine).get, name)
        if entry is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                f"registry entry {name} does not exist: `hubctl registry pull "
                                f"{name} --hf ORG/NAME` (or `hubctl registry import {name} PATH`) "
                                "fills it")  # fmt: skip
            raise AssertionError("abort raises")
        if not entry.ready:
            why = NOT_READY.get(entry.state, f"is {entry.state}").format(name=name)
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                f"registry entry {name} {why}")  # fmt: skip
        return entry

    async def _targets(
        self, context: Context, targets: hub_pb2.Targets
    ) -> tuple[list[str], list[str]]:
        if not (targets.nodes or targets.all or targets.selector):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "name the nodes: --node N, --all or -l KEY=VALUE")  # fmt: skip
        nodes, known = await resolve_targets(self.db, self.nodes, targets, context)
        unknown = [node for node in nodes if node not in known]
        if unknown:
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f"unknown node {', '.join(unknown)}: `hubctl nodes` lists the "
                                "known nodes")  # fmt: skip
        return nodes, known

    async def CacheModel(
        self, request: registry_pb2.CacheModelRequest, context: Context
    ) -> hub_pb2.OperationRef:
        entry = await self._ready(context, await self._entry_name(context, request.name))
        nodes, known = await self._targets(context, request.targets)
        kind = ModelCacheKind(entry, self.objects, self.caches)
        return await submitted(self.manager, context, Request(kind, nodes), known)

    async def UncacheModel(
        self, request: registry_pb2.UncacheModelRequest, context: Context
    ) -> hub_pb2.OperationRef:
        entry = await self._entry_name(context, request.name)
        nodes, known = await self._targets(context, request.targets)
        users: list[str] = []
        if self.models_dir is not None:
            users = await self._models(context, catalog.registry_users, self.models_dir, entry)
        rows = {node.name: node for node, _ in await self.db.call(self.nodes.list_nodes)}
        for node in nodes:
            running = runs(self.sessions, rows[node])
            model = next((m for m in users if running == deploy.project(m)), "")
            if model:
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                    f"model {model} runs on {node} from registry entry {entry}: "
                                    f"stop it first (`hubctl models stop {model} --node {node}`)"
                                    )  # fmt: skip
        kind = ModelUncacheKind(entry, frozenset(users), self.caches)
        return await submitted(self.manager, context, Request(kind, nodes), known)

    async def ListCaches(
        self, request: registry_pb2.ListCachesRequest, context: Context
    ) -> registry_pb2.ListCachesResponse:
        keep = label_filter(await selector(request.selector, context))
        names = {node.name for node, _ in await self.db.call(self.nodes.list_nodes, "", None, keep)}
        entry = await self._entry_name(context, request.name) if request.name else ""
        found = [
            cache_to_proto(node, view, self.sessions.get(node) is not None)
            for node, views in self.caches.items()
            if node in names
            for view in views
            if not entry or view.entry == entry
        ]
        return registry_pb2.ListCachesResponse(caches=found)
