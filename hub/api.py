"""The Hub service: what hubctl and other programs call."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import grpc

from gpufleet.gpus import gpu_to_proto
from gpufleet.v1 import hub_pb2, hub_pb2_grpc
from hub import convert
from hub.ops.api import OperationsApi
from hub.ops.manager import OperationManager
from hub.sessions import SessionRegistry
from hub.store import Database, Store
from hub.store.operations import OperationStore

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
    ) -> None:
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
        rows = await self.db.call(self.store.list_nodes)
        return hub_pb2.ListNodesResponse(
            nodes=[
                convert.node_to_proto(node, count, live_seen=self._live_seen(node.name))
                for node, count in rows
            ]
        )

    async def GetNode(self, request: hub_pb2.GetNodeRequest, context: Context) -> hub_pb2.Node:
        found = await self.db.call(self.store.get_node, request.name)
        if found is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"no node named {request.name!r}: `hubctl nodes` lists the known nodes",
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
        rows = await self.db.call(self.store.list_gpus)
        return hub_pb2.ListGpusResponse(
            gpus=[
                hub_pb2.NodeGpu(
                    node=node.name,
                    node_status=convert.node_status(node.status),
                    gpu=gpu_to_proto(gpu),
                )
                for node, gpu in rows
            ]
        )
