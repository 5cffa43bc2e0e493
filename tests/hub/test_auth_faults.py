"""A handler whose database call hits a storage fault answers one line, not UNKNOWN."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import grpc
import sqlalchemy.exc

from gpufleet.v1 import hub_pb2, hub_pb2_grpc
from hub.trust.auth import AuthInterceptor
from hub.trust.callers import Authenticator


class LockedHub(hub_pb2_grpc.HubServicer):  # type: ignore[misc]
    async def ListNodes(self, request: Any, context: Any) -> hub_pb2.ListNodesResponse:
        raise sqlalchemy.exc.OperationalError("UPDATE node", {}, Exception("database is locked"))

    async def GetNode(self, request: Any, context: Any) -> hub_pb2.Node:
        raise ValueError("a bug, not the database")


async def call(method: str) -> grpc.aio.AioRpcError:
    audit: list[object] = []
    auth = Authenticator(insecure=True, clock=lambda: datetime.now(UTC))
    server = grpc.aio.server(interceptors=[AuthInterceptor(auth, audit.append)])
    hub_pb2_grpc.add_HubServicer_to_server(LockedHub(), server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = hub_pb2_grpc.HubStub(channel)
            try:
                if method == "ListNodes":
                    await stub.ListNodes(hub_pb2.ListNodesRequest(), timeout=5)
                else:
                    await stub.GetNode(hub_pb2.GetNodeRequest(name="x"), timeout=5)
            except grpc.aio.AioRpcError as exc:
                return exc
            raise AssertionError("the call succeeded")
    finally:
        await server.stop(0)


def test_a_storage_fault_in_any_handler_is_one_line_for_the_caller() -> None:
    error = asyncio.run(call("ListNodes"))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert (error.details() or "").startswith(
        "the hub cannot write its database (database is locked): fix the database's storage"
    )


def test_other_errors_are_not_dressed_up_as_storage_faults() -> None:
    assert asyncio.run(call("GetNode")).code() == grpc.StatusCode.UNKNOWN
