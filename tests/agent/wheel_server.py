"""A minimal WheelCache gRPC server for the agent's tests (the hub's is built elsewhere): a real
grpc.aio server on loopback, in its own thread and event loop, keeping each wheel in a directory
(DIR/<key>/meta.json and the wheel). Download streams 1 MiB chunks with the meta first and
NOT_FOUND when absent; Upload checks size and sha256 and refuses a key it holds
(ALREADY_EXISTS), as the protocol says."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
from google.protobuf import json_format

from gpufleet.v1 import agent_link_pb2 as pb
from gpufleet.v1 import agent_link_pb2_grpc

CHUNK = 1024 * 1024


class Servicer(agent_link_pb2_grpc.WheelCacheServicer):  # type: ignore[misc]
    def __init__(self, root: Path) -> None:
        self.root = root
        self.downloads: list[str] = []  # keys asked for, found or not
        self.uploads: list[str] = []  # keys stored

    def _meta(self, key: str) -> pb.WheelMeta | None:
        path = self.root / key / "meta.json"
        if not path.is_file():
            return None
        return json_format.Parse(path.read_text(), pb.WheelMeta())

    async def Download(
        self,
        request: pb.WheelQuery,
        context: grpc.aio.ServicerContext[pb.WheelQuery, pb.WheelChunk],
    ) -> AsyncIterator[pb.WheelChunk]:
        self.downloads.append(request.key)
        meta = self._meta(request.key) if request.key.isalnum() else None
        if meta is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no wheel under {request.key}")
            return
        with open(self.root / request.key / meta.filename, "rb") as file:  # noqa: ASYNC230
            first = True
            while True:
                data = file.read(CHUNK)
                if not data and not first:
                    return
                yield pb.WheelChunk(meta=meta, data=data) if first else pb.WheelChunk(data=data)
                first = False

    async def Upload(
        self, request_iterator: AsyncIterator[pb.WheelChunk],
        context: grpc.aio.ServicerContext[pb.WheelChunk, pb.WheelMeta],
    ) -> pb.WheelMeta:  # fmt: skip
        meta: pb.WheelMeta | None = None
        data = bytearray()
        async for chunk in request_iterator:
            if meta is None:
                if not chunk.HasField("meta"):
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "first chunk: no meta")
                meta = chunk.meta
            data += chunk.data
        if meta is None or not meta.key.isalnum() or "/" in meta.filename:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no usable meta")
            raise AssertionError("unreachable")
        if len(data) != meta.size or hashlib.sha256(data).hexdigest() != meta.sha256:
            await context.abort(grpc.StatusCode.DATA_LOSS, "size or sha256 does not match")
        if self._meta(meta.key) is not None:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, f"{meta.key} is held already")
        directory = self.root / meta.key
        directory.mkdir(parents=True)
        (directory / meta.filename).write_bytes(bytes(data))
        (directory / "meta.json").write_text(json_format.MessageToJson(meta))
        self.uploads.append(meta.key)
        return meta


class WheelServer:
    """Started on a free loopback port; `target` is what an agent dials."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.servicer = Servicer(root)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self.port = 0
        self._thread = threading.Thread(target=self._run, name="wheel-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the test wheel cache did not start")

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self) -> None:
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        server = grpc.aio.server()
        agent_link_pb2_grpc.add_WheelCacheServicer_to_server(self.servicer, server)
        self.port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        self._stop = asyncio.Event()
        self._ready.set()
        await self._stop.wait()
        await server.stop(1)

    def close(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
