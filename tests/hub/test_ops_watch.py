"""WatchOperation on a real hub: an unknown id is NOT_FOUND in one line; an operation from
before the hub's start is found by its row alone, and its stream ends."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest

from gpufleet.v1 import hub_pb2, hub_pb2_grpc
from hub.server import HubConfig, HubServer
from hub.store import migrate
from hub.store.db import make_engine
from hub.store.operations import OperationRecord, OperationStore


def test_unknown_and_stored_operations(tmp_path: Path) -> None:
    config = HubConfig("127.0.0.1:0", tmp_path, insecure=True)
    tmp_path.mkdir(exist_ok=True)
    engine = make_engine(config.database_url)
    migrate(engine)
    created = datetime(2026, 12, 1, 7, 0, tzinfo=UTC)
    OperationStore(engine).create(OperationRecord("op-old", "switch", created, "alpha"), ["a"])
    engine.dispose()

    async def main() -> tuple[grpc.StatusCode, str, list[str]]:
        server = HubServer(config)  # its start marks op-old interrupted
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                stub = hub_pb2_grpc.HubStub(channel)
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    async for _ in stub.WatchOperation(hub_pb2.WatchOperationRequest(id="nope")):
                        pass
                watched = stub.WatchOperation(hub_pb2.WatchOperationRequest(id="op-old"))
                statuses = [event.operation.status async for event in watched]
        finally:
            await server.stop(grace=1)
        return refused.value.code(), refused.value.details() or "", statuses

    code, details, statuses = asyncio.run(main())
    assert (code, details) == (
        grpc.StatusCode.NOT_FOUND,
        "no operation 'nope': `hubctl ops` lists them",
    )
    assert statuses == []  # found, and it ended before this hub: nothing more to tell
