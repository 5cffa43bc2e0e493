"""The Models service: the hub's model definitions, and the models nodes run.

The definitions are read only. Every call reads the models directory (or the file sent)
afresh, so an edited file counts at the next call, in a worker of the hub's models lane
(`hub.work`): a hostile file costs a worker at most MODELS_LIMIT_S, never the event loop. A
file that does not load is one line of the listing; the other models are still listed.
Switching, stopping, listing what runs and reading a model server's log are
`hub.models.deployments`; switching a llama.cpp model's backend is `hub.models.backend`. A
model from the registry is estimated and commanded from its entry (the hub's database), and
listed with the nodes whose cache holds it (`cached_on`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import grpc

from gpufleet.v1 import models_pb2, models_pb2_grpc
from hub.models import catalog, convert
from hub.models.backend import BackendApi
from hub.models.deployments import DeploymentsApi
from hub.models.load import ModelError
from hub.models.running import Cluster, registry_copy, registry_entries, running, where
from hub.models.schema import RegistryCopy
from hub.registry.kinds import Fetching
from hub.store.backends import BackendStore
from hub.work import Busy, Overrun, Work, WorkerDied

Context = grpc.aio.ServicerContext[Any, Any]
T = TypeVar("T")
MODELS_LIMIT_S = 30.0  # reading every model file of the directory, or one file to validate
MAX_NAME = 253  # a model's name is a DNS label; an alias no longer than a host name
MAX_FILENAME = 255


class ModelsService(BackendApi, DeploymentsApi, models_pb2_grpc.ModelsServicer):  # type: ignore[misc]
    def __init__(self, models_dir: Path, work: Work, cluster: Cluster | None = None,
                 fetching: Fetching | None = None) -> None:  # fmt: skip
        self.models_dir = models_dir
        self.work = work
        self.cluster = cluster
        self.fetching = fetching  # the registry's store and the nodes' model caches

    async def _read(self, context: Context, fn: Callable[..., T], *args: Any) -> T:
        """fn(*args) in a worker; a missing directory is FAILED_PRECONDITION, one line."""
        try:
            hint = "make the model files smaller"
            return await self.work.models.run(fn, *args, limit_s=MODELS_LIMIT_S, hint=hint)
        except (Busy, Overrun, WorkerDied) as exc:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
            raise
        except catalog.NotFound as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
            raise
        except ModelError as exc:  # the directory itself: missing, unreadable
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
            raise

    async def ListModels(
        self, request: models_pb2.ListModelsRequest, context: Context
    ) -> models_pb2.ListModelsResponse:
        largest, running_on = await self._where()
        registry = await self._registry()
        entries, errors = await self._read(context, catalog.listing, self.models_dir, largest,
                                           await self._associations(), registry)  # fmt: skip
        revisions: dict[str, str | None] = {copy.name: copy.revision for copy in registry}
        if self.fetching is not None:  # entries gone from the registry, still on nodes
            for _, views in self.fetching.caches.items():
                revisions.update({v.entry: None for v in views if v.entry not in revisions})
        cached = {name: self._cached_on(name, revision) for name, revision in revisions.items()}
        return convert.listing(entries, errors, running_on, cached)

    async def _registry(self) -> tuple[RegistryCopy, ...]:
        """The registry's entries, as the models lane needs them."""
        if self.cluster is None:
            return ()
        return tuple(registry_copy(e) for e in (await registry_entries(self.cluster.db)).values())

    def _cached_on(self, entry: str, revision: str | None) -> list[str]:
        """Where the entry is cached (`hub.models.convert.cached_on`)."""
        if self.fetching is None:
            return []
        sessions = self.cluster.registry if self.cluster is not None else None

        def connected(node: str) -> bool:
            return sessions is not None and sessions.get(node) is not None

        return convert.cached_on(self.fetching.caches.holders(entry), revision, connected)

    async def _associations(self) -> dict[str, str]:
        """model -> the environment switch-backend associated it with."""
        cluster = self.cluster
        if cluster is None:
            return {}
        found = await cluster.db.call(BackendStore(cluster.db.engine).all)
        return {model: a.environment for model, a in found.items()}

    async def _where(self) -> tuple[int | None, dict[str, list[str]]]:
        """The cluster's largest GPU (MiB), and where each model runs."""
        cluster = self.cluster
        if cluster is None:
            return None, {}
        gpus = await cluster.db.call(cluster.store.list_gpus)
        largest = max((gpu.memory_total_mb for _, gpu in gpus if gpu.state != "lost"), default=0)
        nodes = [node for node, _ in await cluster.db.call(cluster.store.list_nodes)]
        stored = {d.node: d for d in await cluster.db.call(cluster.deployments.all)}
        found: dict[str, list[str]] = {}
        for r in running(nodes, stored, cluster.runs, cluster.connected, cluster.advertised):
            found.setdefault(r.model, []).append(where(r))
        return largest or None, found

    async def GetModel(
        self, request: models_pb2.GetModelRequest, context: Context
    ) -> models_pb2.GetModelResponse:
        name = request.name
        if not name or len(name) > MAX_NAME or not name.isprintable():
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"model name {name[:64]!r} is not one: give a model's name or alias "
                "(`hubctl models` lists them)",
            )
        associated = await self._associations()
        registry = await self._registry()
        found = await self._read(context, catalog.detail, self.models_dir, name,
                                 catalog.DEFAULT_DEPLOYMENT, associated, registry)  # fmt: skip
        entry = convert.registry_entry(found.entry.model)
        revision = next((copy.revision for copy in registry if copy.name == entry), None)
        return convert.detail(found, self._cached_on(entry, revision) if entry else [])

    async def ValidateModel(
        self, request: models_pb2.ValidateModelRequest, context: Context
    ) -> models_pb2.ValidateModelResponse:
        filename = request.filename or "model.yaml"
        if len(filename) > MAX_FILENAME or not filename.isprintable():
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"file name {filename[:64]!r} is not usable: give at most {MAX_FILENAME} "
                "printable characters (rename the file)",
            )
        problems, models = await self._read(context, catalog.validation, filename, request.content)
        return convert.validation(problems, models)
