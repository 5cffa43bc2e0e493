"""The Hub API as hubctl sees it: calls with a deadline, errors turned into one line.

Loads gRPC and the Hub stubs: commands import it when they run, not at hubctl's start.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence, Sized
from typing import Any, Protocol, TypeVar

import grpc
import typer

from cli import credentials
from cli.output import CliError, first_line, hub_address
from gpufleet.channel import SETTINGS
from gpufleet.v1 import hub_pb2, hub_pb2_grpc

T = TypeVar("T")
R = TypeVar("R")


class Paged(Protocol):
    page_size: int
    page_token: str


CALL_TIMEOUT_S = 10.0
FIRST_PAGE = 100  # rows of a listing's first page: on screen at once
PAGE = 5000  # rows of each later page (the most a hub takes)


def _nodes(reply: hub_pb2.ListNodesResponse) -> Sequence[hub_pb2.Node]:
    return reply.nodes


def _gpus(reply: hub_pb2.ListGpusResponse) -> Sequence[hub_pb2.NodeGpu]:
    return reply.gpus


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

    def pages(
        self, method: Any, request: Paged, rows: Callable[[T], Sized], limit: int = 0
    ) -> Iterator[T]:
        """Every page of a paged listing (ListNodes, ListGpus, GetStatus), in order: the first
        small, so its rows show at once, later ones large; with `limit`, pages that ask the
        hub for no more than that many rows in all (the caller stops at `limit` rows). The
        next page is asked for before this one is handed on: the hub reads it while the
        caller prints this one."""
        seen: set[str] = set()
        request = copy.deepcopy(request)  # the caller's stays as it was (gpus --watch reuses it)
        request.page_size = min(FIRST_PAGE, limit) if limit else FIRST_PAGE
        pending = method.future(copy.deepcopy(request), timeout=CALL_TIMEOUT_S)
        try:
            got = 0
            while pending is not None:
                try:
                    reply: T = pending.result()
                except grpc.RpcError as error:
                    raise self.error(error) from None
                got += len(rows(reply))
                token = getattr(reply, "next_page_token", "")
                pending = None
                # A hub repeating a token must not make this loop forever.
                if token and token not in seen and not (limit and got >= limit):
                    seen.add(token)
                    request.page_token = token
                    request.page_size = min(PAGE, limit - got) if limit else PAGE
                    pending = method.future(copy.deepcopy(request), timeout=CALL_TIMEOUT_S)
                yield reply
        finally:
            if pending is not None:  # the caller stopped early: the page is not needed
                pending.cancel()

    def listing(
        self, method: Any, request: Paged, rows: Callable[[T], Sequence[R]], limit: int = 0,
    ) -> Iterator[list[R]]:  # fmt: skip
        """The rows of each page as it comes, at most `limit` in all (0: every row)."""
        got = 0
        for reply in self.pages(method, request, rows, limit):
            page = list(rows(reply))[: limit - got] if limit else list(rows(reply))
            got += len(page)
            yield page

    def node_pages(
        self, request: hub_pb2.ListNodesRequest, limit: int = 0
    ) -> Iterator[list[hub_pb2.Node]]:
        """The nodes the request's filters keep, page by page as they come."""
        return self.listing(self.stub.ListNodes, request, _nodes, limit)

    def list_nodes(self, selector: list[str] | None = None) -> list[hub_pb2.Node]:
        """Every node (only those matching every label selector, if given)."""
        request = hub_pb2.ListNodesRequest(selector=selector or [])
        return [node for page in self.node_pages(request) for node in page]

    def get_node(self, name: str) -> hub_pb2.Node:
        node: hub_pb2.Node = self.call(self.stub.GetNode, hub_pb2.GetNodeRequest(name=name))
        return node

    def gpu_pages(
        self, request: hub_pb2.ListGpusRequest, limit: int = 0
    ) -> Iterator[list[hub_pb2.NodeGpu]]:
        return self.listing(self.stub.ListGpus, request, _gpus, limit)

    def list_gpus(self, selector: list[str] | None = None) -> list[hub_pb2.NodeGpu]:
        request = hub_pb2.ListGpusRequest(selector=selector or [])
        return [gpu for page in self.gpu_pages(request) for gpu in page]

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

    def state_pages(
        self, request: hub_pb2.GetStatusRequest, limit: int = 0
    ) -> Iterator[list[hub_pb2.NodeState]]:
        """Each node's switch state, page by page; `store_error` follows the latest page."""

        def rows(reply: hub_pb2.GetStatusResponse) -> Sequence[hub_pb2.NodeState]:
            self.store_error = reply.store_error
            return reply.nodes

        return self.listing(self.stub.GetStatus, request, rows, limit)

    def status(self, selector: list[str] | None = None) -> list[hub_pb2.NodeState]:
        request = hub_pb2.GetStatusRequest(selector=selector or [])
        return [state for page in self.state_pages(request) for state in page]

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
