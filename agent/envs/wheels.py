"""The client of the cluster's wheel cache (the hub's WheelCache gRPC service), over the agent's
own channel to the hub (TLS included): Download into a temporary file, sha256-checked against
the meta, then renamed; Upload in 1 MiB chunks. Behind a small interface (WheelCache) so the
builder runs against a real server in tests and against none where the agent has no hub.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Protocol

import grpc

from agent.envs import protos
from agent.envs.record import WheelInfo
from gpufleet.v1 import agent_link_pb2 as pb
from gpufleet.v1 import agent_link_pb2_grpc

CHUNK = 1024 * 1024
TIMEOUT_S = 600.0
ChannelFactory = Callable[[], AbstractAsyncContextManager[grpc.aio.Channel]]


class WheelError(Exception):
    """A transfer failed; one line."""


class WheelCache(Protocol):
    async def download(self, key: str, directory: Path) -> Path | None:
        """The key's wheel, checked, in `directory`; None when the cache has none."""
        ...

    async def upload(self, wheel: Path, info: WheelInfo) -> None: ...


class NoCache:
    """No hub to ask (an agent without a link, e.g. in benchmarks)."""

    async def download(self, key: str, directory: Path) -> Path | None:
        return None

    async def upload(self, wheel: Path, info: WheelInfo) -> None:
        raise WheelError("this agent has no wheel cache")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _safe_filename(name: str) -> str:
    if not name.endswith(".whl") or os.path.basename(name) != name or name.startswith("."):
        raise WheelError(f"the cache sent a wheel named {name[:80]!r}: not a wheel file name")
    return name


def _reason(exc: grpc.aio.AioRpcError) -> str:
    return f"{exc.code().name}: {(exc.details() or '').splitlines()[0] if exc.details() else ''}"


class GrpcWheels:
    def __init__(self, channel: ChannelFactory, timeout_s: float = TIMEOUT_S) -> None:
        self.channel = channel
        self.timeout_s = timeout_s

    async def download(self, key: str, directory: Path) -> Path | None:
        temporary = directory / f".download-{key[:16]}.part"
        try:
            async with self.channel() as channel:
                call = agent_link_pb2_grpc.WheelCacheStub(channel).Download(
                    pb.WheelQuery(key=key), timeout=self.timeout_s
                )
                info: WheelInfo | None = None
                digest, size = hashlib.sha256(), 0
                with open(temporary, "wb") as file:  # noqa: ASYNC230 (local, 1 MiB writes)
                    async for chunk in call:
                        if info is None:
                            if not chunk.HasField("meta"):
                                raise WheelError("the cache's first chunk has no meta")
                            info = protos.wheel_from_proto(chunk.meta)
                        digest.update(chunk.data)
                        size += len(chunk.data)
                        file.write(chunk.data)
            if info is None:
                raise WheelError("the cache sent nothing")
            if info.key != key:
                raise WheelError(f"the cache sent the wheel of another key ({info.key[:12]})")
            if size != info.size or digest.hexdigest() != info.sha256:
                raise WheelError(f"the downloaded wheel {info.filename} does not match its "
                                 f"sha256 ({size} of {info.size} bytes)")  # fmt: skip
            target = directory / _safe_filename(info.filename)
            os.replace(temporary, target)
            return target
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise WheelError(f"cannot download from the wheel cache: {_reason(exc)}") from None
        finally:
            temporary.unlink(missing_ok=True)

    async def upload(self, wheel: Path, info: WheelInfo) -> None:
        async def chunks() -> AsyncIterator[pb.WheelChunk]:
            with open(wheel, "rb") as file:  # noqa: ASYNC230 (local, 1 MiB reads)
                yield pb.WheelChunk(meta=protos.wheel_to_proto(info), data=file.read(CHUNK))
                while block := file.read(CHUNK):
                    yield pb.WheelChunk(data=block)

        try:
            async with self.channel() as channel:
                await agent_link_pb2_grpc.WheelCacheStub(channel).Upload(
                    chunks(), timeout=self.timeout_s
                )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.ALREADY_EXISTS:
                return  # another node uploaded the same key first: as good
            raise WheelError(f"cannot upload to the wheel cache: {_reason(exc)}") from None
