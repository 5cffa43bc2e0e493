"""The Hub API's configuration, status and operation calls (mixed into HubService)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import grpc
import yaml
from sqlalchemy import Connection

from gpufleet import policy
from gpufleet.v1 import hub_pb2
from hub import convert, limits, listing
from hub.configs import (
    ConfigError,
    Configuration,
    load_directory,
    load_models,
    parse_configuration,
)
from hub.ops.kind import Request
from hub.ops.kinds import DrainKind, StopKind, StoredCapacity, SwitchKind
from hub.ops.manager import OperationError, OperationManager
from hub.ops.submit import ERROR_CODES, resolve_targets, submitted
from hub.paging import filters, paged
from hub.sessions import SessionRegistry
from hub.store import Database, Store
from hub.store.operations import Event, OperationRecord, OperationStore
from hub.trust import callers
from hub.work import Busy, Overrun, Work, WorkerDied

Context = grpc.aio.ServicerContext[Any, Any]
T = TypeVar("T")


def configuration_to_proto(config: Configuration) -> hub_pb2.Configuration:
    return hub_pb2.Configuration(
        name=config.name, description=config.description, use_case=config.use_case,
        digest=config.digest,
        services=[hub_pb2.ServiceInfo(
            name=s.name, vram_gb=s.vram_gb, gpu_count=s.gpu_count,
            latency_class=s.latency_class, model=s.model, health_url=s.health.url,
            drains=s.drain is not None, model_ref=s.model_ref,
        ) for s in config.services],
    )  # fmt: skip


def operation_to_proto(
    operation: OperationRecord, events: list[Event] | None = None
) -> hub_pb2.Operation:
    return hub_pb2.Operation(
        id=operation.id, kind=operation.kind, configuration=operation.configuration,
        status=operation.status, check=operation.check, message=operation.message,
        created=convert.timestamp(operation.created),
        finished=convert.timestamp(operation.finished),
        nodes=[hub_pb2.NodeResult(
            node=n.node, result=n.result, message=n.message,
            started=convert.timestamp(n.started), finished=convert.timestamp(n.finished),
            progress_dropped=n.progress_dropped, warnings=list(n.warnings),
        ) for n in operation.nodes],
        events=[event_to_proto(e) for e in events or []],
    )  # fmt: skip


def event_to_proto(event: Event) -> hub_pb2.OperationEvent:
    message = hub_pb2.OperationEvent(
        seq=event.seq, at=convert.timestamp(event.at), node=event.node, step=event.step,
        message=event.message, progress=event.progress,
    )  # fmt: skip
    if event.percent is not None:
        message.percent = event.percent
    return message


CONFIGS_LIMIT_S = 30.0  # reading every configuration of the directory, or one to validate
FINAL_WAIT_S = 10.0  # how long a watcher waits for an ended operation's writes to land


def _stored_operation(
    _connection: Connection, ops: OperationStore, operation_id: str
) -> OperationRecord | None:
    return ops.get(operation_id)


def unknown_operation(operation_id: str) -> str:
    return f"no operation {operation_id!r}: `hubctl ops` lists them"


def validated(
    name: str, text: str, path: Path, models_dir: Path | None = None
) -> tuple[Configuration, list[str]]:
    """A configuration (its model references resolved against `models_dir`) and what an
    agent's default compose policy would refuse in the compose text it sends (in the
    configurations worker: that text is parsed again, already known to be within bounds)."""
    config = parse_configuration(name, text, path, load_models(models_dir))
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: a fraction of the parse
    return config, policy.warnings(yaml.load(config.text, Loader=loader))


class OperationsApi:
    db: Database
    store: Store
    ops: OperationStore
    manager: OperationManager
    configs_dir: Path
    models_dir: Path | None
    work: Work
    registry: SessionRegistry
    vllm_image: str

    async def _models(self, context: Context, nodes: list[str]) -> dict[str, Configuration]:
        """Per targeted node, the model deployment it runs (to drain and roll back to)."""
        from hub.models.running import regenerated

        try:
            return await regenerated(self.db, self.registry, self.work, self.models_dir,
                                     self.vllm_image, nodes)  # fmt: skip
        except (Busy, Overrun, WorkerDied) as exc:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
            raise

    async def _read_configs(self, context: Context, fn: Callable[..., T], *args: Any) -> T:
        """Parse configurations in a worker: never on the event loop, never without bound."""
        try:
            hint = "make the configuration files smaller"
            return await self.work.configs.run(fn, *args, limit_s=CONFIGS_LIMIT_S, hint=hint)
        except (Busy, Overrun, WorkerDied) as exc:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
            raise

    async def ListConfigurations(
        self, request: hub_pb2.ListConfigurationsRequest, context: Context
    ) -> hub_pb2.ListConfigurationsResponse:
        try:
            found, errors = await self._read_configs(
                context, load_directory, self.configs_dir, self.models_dir
            )
        except ConfigError as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
            raise
        return hub_pb2.ListConfigurationsResponse(
            configurations=[configuration_to_proto(c) for c in found.values()],
            errors=[str(e) for e in errors],
        )

    async def ValidateConfiguration(
        self, request: hub_pb2.ValidateConfigurationRequest, context: Context
    ) -> hub_pb2.ValidateConfigurationResponse:
        if len(request.filename) > 255:
            return hub_pb2.ValidateConfigurationResponse(
                valid=False, error="the file name is longer than 255 characters: shorten it"
            )
        path = Path(request.filename or "configuration.yaml")
        try:
            config, warnings = await self._read_configs(
                context, validated, path.stem, request.content, path, self.models_dir
            )
        except ConfigError as exc:
            return hub_pb2.ValidateConfigurationResponse(valid=False, error=str(exc))
        return hub_pb2.ValidateConfigurationResponse(
            valid=True, configuration=configuration_to_proto(config), warnings=warnings
        )

    async def GetStatus(
        self, request: hub_pb2.GetStatusRequest, context: Context
    ) -> hub_pb2.GetStatusResponse:
        size, after = await paged(request, context, 1)
        wanted = await filters(request, context, self.registry.live, states=request.state)
        nodes, token = await self.db.read(
            listing.states_page, after[0] if after else "", size, wanted, self.registry.live,
            self.manager.busy.get,
        )  # fmt: skip
        return hub_pb2.GetStatusResponse(
            nodes=nodes, next_page_token=token, store_error=self.db.problem()
        )

    async def _targets(
        self, targets: hub_pb2.Targets, context: Context
    ) -> tuple[list[str], list[str]]:
        return await resolve_targets(self.db, self.store, targets, context)

    async def _load(self, context: Context) -> dict[str, Configuration]:
        try:
            found, _ = await self._read_configs(
                context, load_directory, self.configs_dir, self.models_dir
            )
        except ConfigError as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
            raise
        return found

    async def _submit(self, context: Context, make: Callable[[list[str]], Request],
                      targets: hub_pb2.Targets) -> hub_pb2.OperationRef:  # fmt: skip
        nodes, known = await self._targets(targets, context)
        return await submitted(self.manager, context, make(nodes), known)

    async def Switch(
        self, request: hub_pb2.SwitchRequest, context: Context
    ) -> hub_pb2.OperationRef:
        found = await self._load(context)
        config = found.get(request.configuration)
        if config is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"unknown configuration {request.configuration!r}: `hubctl configs` lists "
                f"them ({', '.join(sorted(found)) or 'none loaded'})",
            )
        if not 0 <= request.max_fail_percent <= 100:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "max_fail_percent must be between 0 and 100")  # fmt: skip
        nodes, known = await self._targets(request.targets, context)  # once: 10,000 at --all
        kind = SwitchKind(config, found, rollback=not request.no_rollback,
                          capacity=StoredCapacity(self.db),
                          models=await self._models(context, nodes))  # fmt: skip
        return await submitted(self.manager, context, Request(
            kind, nodes, request.serial, request.max_fail_percent, request.check,
        ), known)  # fmt: skip

    async def Drain(self, request: hub_pb2.DrainRequest, context: Context) -> hub_pb2.OperationRef:
        found = await self._load(context)
        nodes, known = await self._targets(request.targets, context)
        models = await self._models(context, nodes)
        return await submitted(self.manager, context, Request(DrainKind(found, models), nodes),
                               known)  # fmt: skip

    async def Stop(self, request: hub_pb2.StopRequest, context: Context) -> hub_pb2.OperationRef:
        return await self._submit(
            context,
            lambda nodes: Request(StopKind(), nodes, serial=request.serial),
            request.targets,
        )

    async def ListOperations(
        self, request: hub_pb2.ListOperationsRequest, context: Context
    ) -> hub_pb2.ListOperationsResponse:
        try:
            limit = limits.limit("limit", request.limit, 20)
        except limits.OutOfBounds as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{exc} operations")
            raise
        rows = await self.db.call(self.ops.recent, limit)
        return hub_pb2.ListOperationsResponse(
            operations=limits.within_reply(
                operation_to_proto(self.manager.truthful(op)) for op in rows
            ),
            store_error=self.db.problem(),
        )

    async def GetOperation(
        self, request: hub_pb2.GetOperationRequest, context: Context
    ) -> hub_pb2.Operation:
        found = await self.db.call(self.ops.get, request.id)
        if found is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, unknown_operation(request.id))
            raise AssertionError("abort raises")
        events = await self.db.call(self.ops.events, request.id) if request.with_events else None
        return operation_to_proto(self.manager.truthful(found), events)

    async def CancelOperation(
        self, request: hub_pb2.CancelOperationRequest, context: Context
    ) -> hub_pb2.Operation:
        try:
            await self.manager.cancel(request.id, callers.current.get().identity)
        except OperationError as exc:
            await context.abort(ERROR_CODES[exc.kind], str(exc))
        found = await self.db.call(self.ops.get, request.id)
        assert found is not None
        return operation_to_proto(self.manager.truthful(found))

    async def _final(self, operation_id: str) -> OperationRecord | None:
        """An ended operation as stored, read on a reader thread (not queued behind the
        writer's queue) once its writes landed, or FINAL_WAIT_S later: `truthful` then tells
        its outcome while the database refuses writes."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.manager.writes.landed(), FINAL_WAIT_S)
        return await self.db.read(_stored_operation, self.ops, operation_id)

    async def WatchOperation(
        self, request: hub_pb2.WatchOperationRequest, context: Context
    ) -> AsyncIterator[hub_pb2.OperationEvent]:
        # A running operation is known without a read; another is looked up by its row alone
        # (its 10,000 node rows are not loaded on the database thread just to say it exists).
        if request.id not in self.manager.running and not await self.db.call(
            self.ops.exists, request.id
        ):
            await context.abort(grpc.StatusCode.NOT_FOUND, unknown_operation(request.id))
        async for event in self.manager.watch(request.id):
            message = event_to_proto(event)
            if event.done:
                found = await self._final(request.id)
                if found is not None:
                    message.operation.CopyFrom(operation_to_proto(self.manager.truthful(found)))
            yield message
