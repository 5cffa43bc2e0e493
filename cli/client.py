"""The Hub API as hubctl sees it: calls with a deadline, errors turned into one line.

Loads gRPC and the Hub stubs: commands import it when they run, not at hubctl's start.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol, TypeVar

import grpc
import typer

from cli import credentials
from cli.output import CliError, first_line, hub_address
from gpufleet.channel import SETTINGS
from gpufleet.v1 import hub_pb2, hub_pb2_grpc

T = TypeVar("T")


class Paged(Protocol):
    page_token: str


CALL_TIMEOUT_S = 10.0


def unreachable(hub: str, error: grpc.RpcError) -> CliError:
    details = (error.details() or error.code().name) if isinstance(error, grpc.Call) else str(error)
    if "Connection refused" in details or "failed to connect to all addresses" in details:
        details = "connection refused (is the hub running? start one with `hubctl up`)"
    elif error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
        details = f"no answer within {CALL_TIMEOUT_S:g} s"
    return CliError(f"cannot reach hub at {hub}: {details.splitlines()[0]}", exit_code=2)


def connect(ctx: typer.Context) -> HubClient:
    return HubClient(hub_address(ctx))


class HubClient:
    def __init__(self, hub: str) -> None:
        self.hub = hub
        self.channel = credentials.channel(hub, SETTINGS.client_options())
        self.stub = hub_pb2_grpc.HubStub(self.channel)
        self.store_error = ""  # the hub's word on its database, from status and ops

    def close(self) -> None:
        self.channel.close()

    def error(self, error: grpc.RpcError) -> CliError:
        """Any failed call as one line: unreachable (exit 2), too old a hub, or its reason."""
        code = error.code() if isinstance(error, grpc.Call) else None
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            return unreachable(self.hub, error)
        if code == grpc.StatusCode.UNIMPLEMENTED:
            return CliError(f"the hub at {self.hub} does not offer this yet: upgrade gpufleet-hub")
        details = error.details() if isinstance(error, grpc.Call) else str(error)
        return CliError(first_line(details) or f"hub answered {code}")

    def call(self, method: Callable[..., T], request: object) -> T:
        """A unary call on any stub built over `self.channel`, errors as CliError."""
        try:
            return method(request, timeout=CALL_TIMEOUT_S)
        except grpc.RpcError as error:
            raise self.error(error) from None

    def pages(self, method: Callable[..., T], request: Paged) -> Iterator[T]:
        """Every page of a paged listing (ListNodes, ListGpus, GetStatus), in order."""
        seen: set[str] = set()
        while True:
            reply = self.call(method, request)
            yield reply
            token = getattr(reply, "next_page_token", "")
            if not token or token in seen:  # a hub repeating a token must not loop forever
                return
            seen.add(token)
            request.page_token = token

    def list_nodes(self, selector: list[str] | None = None) -> list[hub_pb2.Node]:
        """Every node (only those matching every label selector, if given)."""
        found: list[hub_pb2.Node] = []
        request = hub_pb2.ListNodesRequest(selector=selector or [])
        for reply in self.pages(self.stub.ListNodes, request):
            found += reply.nodes
        return found

    def get_node(self, name: str) -> hub_pb2.Node:
        node: hub_pb2.Node = self.call(self.stub.GetNode, hub_pb2.GetNodeRequest(name=name))
        return node

    def list_gpus(self, selector: list[str] | None = None) -> list[hub_pb2.NodeGpu]:
        found: list[hub_pb2.NodeGpu] = []
        request = hub_pb2.ListGpusRequest(selector=selector or [])
        for reply in self.pages(self.stub.ListGpus, request):
            found += reply.gpus
        return found

    def configurations(self) -> hub_pb2.ListConfigurationsResponse:
        reply: hub_pb2.ListConfigurationsResponse = self.call(
            self.stub.ListConfigurations, hub_pb2.ListConfigurationsRequest()
        )
        return reply

    def validate(self, filename: str, content: str) -> hub_pb2.ValidateConfigurationResponse:
        request = hub_pb2.ValidateConfigurationRequest(filename=filename, content=content)
        reply: hub_pb2.ValidateConfigurationResponse = self.call(
            self.stub.ValidateConfiguration, request
        )
        return reply

    def status(self, selector: list[str] | None = None) -> list[hub_pb2.NodeState]:
        found: list[hub_pb2.NodeState] = []
        request = hub_pb2.GetStatusRequest(selector=selector or [])
        for reply in self.pages(self.stub.GetStatus, request):
            self.store_error = reply.store_error
            found += reply.nodes
        return found

    def operations(self, limit: int) -> list[hub_pb2.Operation]:
        request = hub_pb2.ListOperationsRequest(limit=limit)
        reply = self.call(self.stub.ListOperations, request)
        self.store_error = reply.store_error
        return list(reply.operations)

    def operation(self, operation_id: str, with_events: bool = False) -> hub_pb2.Operation:
        request = hub_pb2.GetOperationRequest(id=operation_id, with_events=with_events)
        reply: hub_pb2.Operation = self.call(self.stub.GetOperation, request)
        return reply

    def cancel(self, operation_id: str) -> hub_pb2.Operation:
        """Stop a running operation; the hub answers with the operation as it ended."""
        request = hub_pb2.CancelOperationRequest(id=operation_id)
        reply: hub_pb2.Operation = self.call(self.stub.CancelOperation, request)
        return reply

    def watch(self, operation_id: str) -> Iterator[hub_pb2.OperationEvent]:
        """Events until the operation ends; no deadline (operations can take an hour)."""
        request = hub_pb2.WatchOperationRequest(id=operation_id)
        try:
            yield from self.stub.WatchOperation(request)
        except grpc.RpcError as error:
            if isinstance(error, grpc.Call) and error.code() == grpc.StatusCode.UNAVAILABLE:
                raise CliError(
                    f"lost the hub at {self.hub} while watching; the operation goes on "
                    f"there: hubctl ops watch {operation_id}",
                    exit_code=2,
                ) from None
            raise self.error(error) from None
