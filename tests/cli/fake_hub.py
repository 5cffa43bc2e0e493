"""An in-process Hub API serving canned protobuf messages, for driving hubctl's output.

hubctl runs against it exactly as against a hub (plaintext, GPUFLEET_INSECURE=1): a real
gRPC server and the generated servicer, whose unimplemented methods answer UNIMPLEMENTED.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from datetime import UTC, datetime

import grpc

from gpufleet.v1 import hub_pb2, hub_pb2_grpc, types_pb2

AT = datetime(2026, 11, 30, 12, 0, 1, tzinfo=UTC)


def event(step: str, message: str, node: str = "gpu-a", **fields: object) -> hub_pb2.OperationEvent:
    found = hub_pb2.OperationEvent(node=node, step=step, message=message, **fields)  # type: ignore[arg-type]
    found.at.FromDatetime(AT)
    return found


def operation(status: str = "succeeded", result: str = "changed", dropped: int = 0,
              events: list[hub_pb2.OperationEvent] | None = None) -> hub_pb2.Operation:  # fmt: skip
    return hub_pb2.Operation(
        id="op-1", kind="switch", configuration="alpha", status=status, message=status,
        nodes=[hub_pb2.NodeResult(node="gpu-a", result=result, message="switched to alpha",
                                  progress_dropped=dropped)],
        events=events or [],
    )  # fmt: skip


class FakeHub(hub_pb2_grpc.HubServicer):  # type: ignore[misc]
    """GetOperation and WatchOperation from `self.stored` and `self.stream`; one node with
    one GPU for ListNodes and ListGpus."""

    def __init__(self, stored: hub_pb2.Operation, stream: list[hub_pb2.OperationEvent]) -> None:
        self.stored = stored
        self.stream = stream

    def ListNodes(self, request: hub_pb2.ListNodesRequest, context: grpc.ServicerContext) -> object:
        node = hub_pb2.Node(name="gpu-a", status=types_pb2.NODE_STATUS_READY, gpu_count=2)
        node.last_seen.GetCurrentTime()
        named = not request.names or "gpu-a" in request.names
        return hub_pb2.ListNodesResponse(nodes=[node] if named else [])

    def ListGpus(self, request: hub_pb2.ListGpusRequest, context: grpc.ServicerContext) -> object:
        gpu = types_pb2.Gpu(index=0, name="NVIDIA RTX A5500", memory_total_mb=24564,
                            memory_used_mb=19304, compute_capability="8.6")  # fmt: skip
        named = not request.names or "gpu-a" in request.names
        return hub_pb2.ListGpusResponse(
            gpus=[hub_pb2.NodeGpu(node="gpu-a", gpu=gpu)] if named else []
        )

    def GetOperation(
        self, request: hub_pb2.GetOperationRequest, context: grpc.ServicerContext
    ) -> hub_pb2.Operation:
        if request.id != self.stored.id:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no operation {request.id}\nsecond line")
        found = hub_pb2.Operation()
        found.CopyFrom(self.stored)
        if not request.with_events:
            del found.events[:]
        return found

    def WatchOperation(
        self, request: hub_pb2.WatchOperationRequest, context: grpc.ServicerContext
    ) -> Iterator[hub_pb2.OperationEvent]:
        yield from self.stream


class CancellingHub(FakeHub):
    def CancelOperation(
        self, request: hub_pb2.CancelOperationRequest, context: grpc.ServicerContext
    ) -> hub_pb2.Operation:
        if request.id != self.stored.id:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no operation {request.id}")
        if self.stored.status != "running":
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"{request.id} already ended")
        return operation(status="cancelled", result="cancelled")


def serve(servicer: FakeHub) -> tuple[grpc.Server, str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    hub_pb2_grpc.add_HubServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, f"127.0.0.1:{port}"
