"""The WheelCache gRPC service agents use (agent/envs/wheels.py is the client): Download
streams a held wheel in 1 MiB chunks, the first with its meta; Upload stores a wheel a node
compiled (hub/envs/wheels.py checks and writes it). Agents only (hub/services.py).

The node that built a wheel is the one whose certificate uploaded it (an --insecure hub takes
the meta's word).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from collections.abc import AsyncIterator
from typing import Any, BinaryIO

import grpc
from google.protobuf.message import DecodeError

from gpufleet.v1 import agent_link_pb2 as pb
from gpufleet.v1 import agent_link_pb2_grpc
from hub.envs.wheels import (
    Wheel,
    WheelError,
    WheelStore,
    check_key,
    describe,
    wheel_from_proto,
    wheel_to_proto,
)
from hub.trust import callers

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024
CODES = {
    "invalid": grpc.StatusCode.INVALID_ARGUMENT,
    "exists": grpc.StatusCode.ALREADY_EXISTS,
    "mismatch": grpc.StatusCode.DATA_LOSS,
    "space": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "not_found": grpc.StatusCode.NOT_FOUND,
    "ambiguous": grpc.StatusCode.INVALID_ARGUMENT,
    "damaged": grpc.StatusCode.DATA_LOSS,
}
Context = grpc.aio.ServicerContext[Any, Any]


def code(error: WheelError) -> grpc.StatusCode:
    return CODES.get(error.kind, grpc.StatusCode.FAILED_PRECONDITION)


def _open(wheel: Wheel, store: WheelStore) -> BinaryIO:
    """The wheel's file, checked to have its size (a file damaged on the hub's disk is not
    sent: the client would refuse it after the whole transfer)."""
    try:
        file = open(store.path(wheel), "rb")  # noqa: SIM115 (closed by the caller)
    except FileNotFoundError:
        raise WheelError("not_found", f"no wheel under {wheel.key}") from None
    size = os.fstat(file.fileno()).st_size
    if size != wheel.size:
        file.close()
        raise WheelError("damaged", f"the cached wheel {wheel.key[:12]} is damaged ({size} of "
                         f"{wheel.size} bytes): remove it with `hubctl envs cache rm "
                         f"{wheel.key[:12]}`; the next build uploads it again")  # fmt: skip
    return file


class WheelCacheService(agent_link_pb2_grpc.WheelCacheServicer):  # type: ignore[misc]
    def __init__(self, store: WheelStore) -> None:
        self.store = store

    async def Download(
        self, request: pb.WheelQuery, context: Context
    ) -> AsyncIterator[pb.WheelChunk]:
        try:
            wheel = self.store.get(check_key(request.key))
            if wheel is None:
                raise WheelError("not_found", f"no wheel under {request.key}")
            file = await asyncio.to_thread(_open, wheel, self.store)
        except WheelError as exc:
            await context.abort(code(exc), str(exc))
            return
        try:
            meta = wheel_to_proto(wheel)
            first = True
            while True:
                data = await asyncio.to_thread(file.read, CHUNK)
                if not data and not first:
                    return
                yield pb.WheelChunk(meta=meta, data=data) if first else pb.WheelChunk(data=data)
                first = False
        finally:
            file.close()

    async def Upload(
        self, request_iterator: AsyncIterator[pb.WheelChunk], context: Context
    ) -> pb.WheelMeta:
        chunks = aiter(request_iterator)
        try:
            first = await anext(chunks)
        except StopAsyncIteration:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no chunk sent: the first "
                                "carries the wheel's meta")  # fmt: skip
            raise
        except DecodeError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "malformed chunk")
            raise
        try:
            if not first.HasField("meta"):
                raise WheelError("invalid", "the first chunk carries no meta (key, filename, "
                                 "size, sha256)")  # fmt: skip
            wheel = wheel_from_proto(first.meta)
            node = callers.current.get().node_name
            if node is not None:  # the certificate says who built it
                wheel = dataclasses.replace(wheel, built_on=node)
            stored = await self.store.put(wheel, _data(first, chunks))
        except WheelError as exc:
            await context.abort(code(exc), str(exc))
            raise
        except DecodeError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "malformed chunk")
            raise
        log.info("wheel cache: stored %s from %s: %s", stored.key[:12], stored.built_on or "?",
                 describe(stored))  # fmt: skip
        return wheel_to_proto(stored)


async def _data(first: pb.WheelChunk, rest: AsyncIterator[pb.WheelChunk]) -> AsyncIterator[bytes]:
    yield first.data
    async for chunk in rest:
        if chunk.HasField("meta"):
            raise WheelError("invalid", "only the first chunk may carry a meta")
        yield chunk.data
