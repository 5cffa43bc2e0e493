"""The Hub service: what hubctl and other programs call."""

from __future__ import annotations

from datetime import datetime
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
from hub.work import Work

Context = grpc.aio.ServicerContext[Any, Any]


class HubService(OperationsApi, hub_pb2_grpc.HubServicer):  # type: ignore[misc]
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

    def _live_seen(self, name: str) -> datetime | None:
        session = self.registry.get(name)
        return session.last_seen if session is not None else None

    async def ListNodes(
        self, request: hub_pb2.ListNodesRequest, context: Context
    ) -> hub_pb2.ListNodesResponse:
        size, after = await paged(request, context, 1)
        wanted = await filters(request, context, self.registry.get, states=request.state)
        nodes, token = await self.db.read(
            listing.nodes_page, after[0] if after else "", size, wanted, self.registry.get
        )
        return hub_pb2.ListNodesResponse(nodes=nodes, next_page_token=token)

    async def GetNode(self, request: hub_pb2.GetNodeRequest, context: Context) -> hub_pb2.Node:
        found = await self.db.call(self.store.get_node, request.name)
        if found is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"no node named {request.name[:64]!r}: `hubctl nodes` lists the known nodes",
            )
        node, gpus = found
        events = await self.db.call(self.store.events, node.name)
        transitions = await self.db.call(self.ops.transitions, node.name)
        return convert.node_to_proto(
            node, len(gpus), gpus, self._live_seen(node.name), events, transitions
        )

    async def ListGpus(
        self, request: hub_pb2.ListGpusRequest, context: Context
    ) -> hub_pb2.ListGpusResponse:
        size, after = await paged(request, context, 2)
        try:
            key = limits.gpu_key(after)
        except limits.OutOfBounds as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise
        wanted = await filters(request, context, self.registry.get, gpu_states=request.gpu_state)
        gpus, token = await self.db.read(listing.gpus_page, key, size, wanted, self.registry.get)
        return hub_pb2.ListGpusResponse(gpus=gpus, next_page_token=token)
