"""The Hub API as hubctl sees it: calls with a deadline, errors turned into one line."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar

import grpc

from cli import credentials
from cli.errors import CliError
from gpufleet.v1 import hub_pb2, hub_pb2_grpc

__all__ = ["CliError", "HubClient", "first_line", "unreachable"]

T = TypeVar("T")
CALL_TIMEOUT_S = 10.0


def unreachable(hub: str, error: grpc.RpcError) -> CliError:
    details = (error.details() or error.code().name) if isinstance(error, grpc.Call) else str(error)
    if "Connection refused" in details or "failed to connect to all addresses" in details:
        details = "connection refused (is the hub running? start one with `hubctl up`)"
    elif error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
        details = f"no answer within {CALL_TIMEOUT_S:g} s"
    return CliError(f"cannot reach hub at {hub}: {details.splitlines()[0]}", exit_code=2)


def first_line(text: str | None) -> str:
    """One line for the user; the hub's log has the rest."""
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


# Pings notice a hub host that vanished without a reset, so `switch` cannot hang forever.
CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]


class HubClient:
    def __init__(self, hub: str) -> None:
        self.hub = hub
        self.channel = credentials.channel(hub, CHANNEL_OPTIONS)
        self._stub = hub_pb2_grpc.HubStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def call(self, method: Callable[..., T], request: object) -> T:
        """A unary call on any stub built over `self.channel`, errors as CliError."""
        try:
            return method(request, timeout=CALL_TIMEOUT_S)
        except grpc.RpcError as error:
            code = error.code() if isinstance(error, grpc.Call) else None
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise unreachable(self.hub, error) from None
            details = error.details() if isinstance(error, grpc.Call) else str(error)
            raise CliError(first_line(details) or f"hub answered {code}") from None

    def list_nodes(self) -> list[hub_pb2.Node]:
        return list(self.call(self._stub.ListNodes, hub_pb2.ListNodesRequest()).nodes)

    def get_node(self, name: str) -> hub_pb2.Node:
        node: hub_pb2.Node = self.call(self._stub.GetNode, hub_pb2.GetNodeRequest(name=name))
        return node

    def list_gpus(self) -> list[hub_pb2.NodeGpu]:
        return list(self.call(self._stub.ListGpus, hub_pb2.ListGpusRequest()).gpus)

    def configurations(self) -> hub_pb2.ListConfigurationsResponse:
        reply: hub_pb2.ListConfigurationsResponse = self.call(
            self._stub.ListConfigurations, hub_pb2.ListConfigurationsRequest()
        )
        return reply

    def validate(self, filename: str, content: str) -> hub_pb2.ValidateConfigurationResponse:
        request = hub_pb2.ValidateConfigurationRequest(filename=filename, content=content)
        reply: hub_pb2.ValidateConfigurationResponse = self.call(
            self._stub.ValidateConfiguration, request
        )
        return reply

    def status(self) -> list[hub_pb2.NodeState]:
        return list(self.call(self._stub.GetStatus, hub_pb2.GetStatusRequest()).nodes)

    def submit(self, method: str, request: object) -> str:
        """Switch, Drain or Stop: the new operation's id."""
        reply: hub_pb2.OperationRef = self.call(getattr(self._stub, method), request)
        return reply.id

    def operations(self, limit: int) -> list[hub_pb2.Operation]:
        request = hub_pb2.ListOperationsRequest(limit=limit)
        return list(self.call(self._stub.ListOperations, request).operations)

    def operation(self, operation_id: str) -> hub_pb2.Operation:
        reply: hub_pb2.Operation = self.call(
            self._stub.GetOperation, hub_pb2.GetOperationRequest(id=operation_id)
        )
        return reply

    def watch(self, operation_id: str) -> Iterator[hub_pb2.OperationEvent]:
        """Events until the operation ends; no deadline (operations can take an hour)."""
        request = hub_pb2.WatchOperationRequest(id=operation_id)
        try:
            yield from self._stub.WatchOperation(request)
        except grpc.RpcError as error:
            code = error.code() if isinstance(error, grpc.Call) else None
            if code == grpc.StatusCode.UNAVAILABLE:
                raise CliError(
                    f"lost the hub at {self.hub} while watching; the operation goes on "
                    f"there: hubctl ops watch {operation_id}",
                    exit_code=2,
                ) from None
            details = error.details() if isinstance(error, grpc.Call) else str(error)
            raise CliError(first_line(details) or f"hub answered {code}") from None
