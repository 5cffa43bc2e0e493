"""The Gateway service: what gpufleet-gateway processes call (role gateway)."""

from __future__ import annotations

from typing import Any

import grpc

from gpufleet.v1 import gateway_pb2, gateway_pb2_grpc, hub_pb2
from hub.api import HubService
from hub.models.running import Cluster

Context = grpc.aio.ServicerContext[Any, Any]


class GatewayService(gateway_pb2_grpc.GatewayServicer):  # type: ignore[misc]
    def __init__(self, cluster: Cluster, hub: HubService) -> None:
        self.cluster = cluster
        self.hub = hub

    async def GpuStats(
        self, request: gateway_pb2.GpuStatsRequest, context: Context
    ) -> hub_pb2.ListGpusResponse:
        return await self.hub.ListGpus(hub_pb2.ListGpusRequest(), context)

    def keys_changed(self) -> None:
        """An API key was created or revoked: the next table goes out at once."""
