"""The Hub API as hubctl sees it: calls with a deadline, errors turned into one line."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import grpc

from gpufleet.v1 import hub_pb2, hub_pb2_grpc

T = TypeVar("T")
DEFAULT_HUB = "localhost:7443"
CALL_TIMEOUT_S = 10.0


class CliError(Exception):
    """Shown as one line on stderr; `exit_code` is the process's exit status."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def unreachable(hub: str, error: grpc.RpcError) -> CliError:
    details = (error.details() or error.code().name) if isinstance(error, grpc.Call) else str(error)
    if "Connection refused" in details:
        details = "connection refused (is the hub running? start one with `hubctl up`)"
    elif error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
        details = f"no answer within {CALL_TIMEOUT_S:g} s"
    return CliError(f"cannot reach hub at {hub}: {details.splitlines()[0]}", exit_code=2)


class HubClient:
    def __init__(self, hub: str) -> None:
        self.hub = hub
        self._channel = grpc.insecure_channel(hub)
        self._stub = hub_pb2_grpc.HubStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: Callable[..., T], request: object) -> T:
        try:
            return method(request, timeout=CALL_TIMEOUT_S)
        except grpc.RpcError as error:
            code = error.code() if isinstance(error, grpc.Call) else None
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise unreachable(self.hub, error) from None
            details = error.details() if isinstance(error, grpc.Call) else str(error)
            raise CliError(details or f"hub answered {code}") from None

    def list_nodes(self) -> list[hub_pb2.Node]:
        return list(self._call(self._stub.ListNodes, hub_pb2.ListNodesRequest()).nodes)

    def get_node(self, name: str) -> hub_pb2.Node:
        node: hub_pb2.Node = self._call(self._stub.GetNode, hub_pb2.GetNodeRequest(name=name))
        return node

    def list_gpus(self) -> list[hub_pb2.NodeGpu]:
        return list(self._call(self._stub.ListGpus, hub_pb2.ListGpusRequest()).gpus)
