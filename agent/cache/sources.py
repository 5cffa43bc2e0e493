"""Where a fetch reads a file's bytes from: a presigned URL (ranged GETs, aiohttp) or the hub's
RegistryFetch.Download (over the agent's own channel). Both behind `Source`, so the fetcher's
core is tested with any stand-in that serves bytes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

import aiohttp
import grpc

from gpufleet.v1 import registry_pb2 as rpb
from gpufleet.v1 import registry_pb2_grpc

READ = 1 << 20
BUFFER = 4 << 20
ChannelFactory = Callable[[], AbstractAsyncContextManager[grpc.aio.Channel]]


class SourceError(Exception):
    """A source failed to deliver; one line."""


@dataclass(frozen=True)
class Wanted:
    """Bytes of one file of an entry: [offset, offset + length)."""

    entry: str
    revision: str
    path: str
    url: str
    offset: int
    length: int


class Source(Protocol):
    def read(self, wanted: Wanted) -> AsyncIterator[bytes]:
        """The bytes asked for, in pieces of any size; SourceError when it cannot."""
        ...


class HttpSource:
    """Ranged GETs on a presigned URL."""

    def __init__(self, timeout_s: float = 60.0) -> None:
        self.timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout_s,
                                             sock_read=timeout_s)  # fmt: skip

    async def read(self, wanted: Wanted) -> AsyncIterator[bytes]:
        last = wanted.offset + wanted.length - 1
        headers = {"Range": f"bytes={wanted.offset}-{last}"}
        try:
            async with aiohttp.ClientSession(timeout=self.timeout,
                                             read_bufsize=BUFFER) as session, \
                    session.get(wanted.url, headers=headers) as response:  # fmt: skip
                if response.status not in (200, 206):
                    raise SourceError(f"{wanted.path}: the object store answered "
                                      f"{response.status} {response.reason}")  # fmt: skip
                if response.status == 200 and wanted.offset:
                    raise SourceError(f"{wanted.path}: the object store ignored the range")
                remaining = wanted.length
                async for block, _ in response.content.iter_chunks():
                    yield block[:remaining]
                    remaining -= len(block)
                    if remaining <= 0:
                        return
        except aiohttp.ClientError as exc:
            raise SourceError(f"{wanted.path}: {exc or type(exc).__name__}") from None


class HubSource:
    """The hub's RegistryFetch.Download, streamed over the agent's channel."""

    def __init__(self, channel: ChannelFactory) -> None:
        self.channel = channel

    async def read(self, wanted: Wanted) -> AsyncIterator[bytes]:
        request = rpb.DownloadRequest(entry=wanted.entry, revision=wanted.revision,
                                      path=wanted.path, offset=wanted.offset,
                                      length=wanted.length)  # fmt: skip
        try:
            async with self.channel() as channel:
                stub = registry_pb2_grpc.RegistryFetchStub(channel)
                async for piece in stub.Download(request):
                    yield piece.data
        except grpc.aio.AioRpcError as exc:
            raise SourceError(f"{wanted.path}: the hub: {exc.code().name}: "
                              f"{exc.details()}") from None  # fmt: skip


class Sources:
    """The URL when the hub sent one, else the hub."""

    def __init__(self, http: Source, hub: Source | None) -> None:
        self.http, self.hub = http, hub

    def read(self, wanted: Wanted) -> AsyncIterator[bytes]:
        if wanted.url:
            return self.http.read(wanted)
        if self.hub is None:
            raise SourceError(f"{wanted.path}: no URL and no hub to fetch it through")
        return self.hub.read(wanted)
