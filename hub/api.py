"""The Hub service: what hubctl and other programs call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc

from gpufleet.v1 import hub_pb2, hub_pb2_grpc
from hub import convert, limits, listing
from hub.models.deploy import DEFAULT_VLLM_IMAGE
from hub.ops.api import OperationsApi
from hub.ops.manager import OperationManager
from hub.paging import filters, paged
from hub.sessions import SessionRegistry
from hub.store import Database, Store
from hub.store.operations import OperationStore
from hub.store.usage import UsageStore
from hub.telemetry import DEFAULT_RETENTION, GpuUsageApi, Retention
from hub.work import Work

Context = grpc.aio.ServicerContext[Any, Any]


class HubService(GpuUsageApi, OperationsApi, hub_pb2_grpc.HubServicer):  # type: ignore[misc]
    def __init__(
        self,
        registry: SessionRegistry,
        db: Database,
        store: Store,
        ops: OperationStore,
        manager: OperationManager,
        configs_dir: Path,
        work: Work,
        models_dir: Path | None = None,
        vllm_image: str = DEFAULT_VLLM_IMAGE,
        retention: Retention = DEFAULT_RETENTION,
    ) -> None:
        self.work = work
        self.models_dir = models_dir
        self.vllm_image = vllm_image
        self.registry = registry
        self.db = db
        self.store = store
        self.ops = ops
        self.manager = manager
        self.configs_dir = configs_dir
        self.usage = UsageStore(db.engine)
        self.retention = retention

    async def ListNodes(
        self, request: hub_pb2.ListNodesRequest, context: Context
    ) -> hub_pb2.ListNodesResponse:
        size, after = await paged(request, context, 1)
        wanted = await filters(request, context, self.registry.live, states=request.state)
        nodes, token = await self.db.read(
            listing.nodes_page, after[0] if after else "", size, wanted, self.registry.live
        )
        return hub_pb2.ListNodesResponse(nodes=nodes, next_page_token=token)

    async def GetNode(self, request: hub_pb2.GetNodeRequest, context: Context) -> hub_pb2.Node:
        node = await self.db.read(listing.node_detail, request.name, self.registry.live)
        if node is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"no node named {request.name[:64]!r}: `hubctl nodes` lists the known nodes",
            )
        assert node is not None
        events = await self.db.call(self.store.events, node.name)
        transitions = await self.db.call(self.ops.transitions, node.name)
        node.events.extend(convert.event_to_proto(event) for event in events)
        node.transitions.extend(listing.transition_to_proto(t) for t in transitions)
        return node

    async def ListGpus(
        self, request: hub_pb2.ListGpusRequest, context: Context
    ) -> hub_pb2.ListGpusResponse:
        size, after = await paged(request, context, 2)
        try:
            key = limits.gpu_key(after)
        except limits.OutOfBounds as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise
        wanted = await filters(request, context, self.registry.live, gpu_states=request.gpu_state)
        gpus, token = await self.db.read(listing.gpus_page, key, size, wanted, self.registry.live)
        return hub_pb2.ListGpusResponse(gpus=gpus, next_page_token=token)
