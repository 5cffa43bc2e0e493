"""RegistryFetch.Download: an entry's file streamed through the hub to an agent, for a registry
with no presigned URLs (the embedded directory). From `offset`, `length` bytes (0: to the end),
in messages of at most 3 MiB (READ_PIECE); files of ready entries only. Agents only
(hub/services.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from gpufleet.v1 import registry_pb2 as pb
from gpufleet.v1 import registry_pb2_grpc
from hub.registry.store import READ_PIECE, NotFound, ObjectStore, StoreError
from hub.store.db import Database
from hub.store.registry import RegistryStore

Context = grpc.aio.ServicerContext[Any, Any]
PIECE = READ_PIECE  # bytes per DownloadChunk at most


class RegistryFetchService(registry_pb2_grpc.RegistryFetchServicer):  # type: ignore[misc]
    def __init__(self, db: Database, objects: ObjectStore) -> None:
        self.db = db
        self.entries = RegistryStore(db.engine)
        self.objects = objects

    async def Download(self, request: pb.DownloadRequest,
                       context: Context) -> AsyncIterator[pb.DownloadChunk]:  # fmt: skip
        entry = await self.db.call(self.entries.get, request.entry)
        if entry is None or not entry.ready:
            state = "no such entry" if entry is None else f"the entry is {entry.state}"
            await context.abort(grpc.StatusCode.NOT_FOUND, f"registry entry "
                                f"{request.entry[:64]!r} cannot be fetched: {state}")  # fmt: skip
            return
        if request.revision and request.revision != entry.revision:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"registry entry {entry.name} is at "
                                f"revision {entry.revision}, not {request.revision[:64]}: fetch "
                                "it again for its current files")  # fmt: skip
            return
        file = entry.file(request.path)
        if file is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"registry entry {entry.name} has no "
                                f"file {request.path[:200]!r}")  # fmt: skip
            return
        if request.offset > file.size:
            await context.abort(grpc.StatusCode.OUT_OF_RANGE, f"{entry.name}/{file.path} has "
                                f"{file.size} bytes; offset {request.offset} is past its "
                                "end")  # fmt: skip
            return
        left = file.size - request.offset
        length = min(request.length, left) if request.length else left
        try:
            async for data in self.objects.read(entry.key(file.path), request.offset, length):
                for start in range(0, len(data), PIECE):
                    yield pb.DownloadChunk(data=data[start : start + PIECE])
        except NotFound:
            await context.abort(grpc.StatusCode.DATA_LOSS, f"the registry lost {entry.name}/"
                                f"{file.path} ({self.objects.describe()}): remove the entry and "
                                "pull or import it again")  # fmt: skip
        except StoreError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
