"""Fetching one file of an entry into the cache, verified chunk by chunk.

A part file in ROOT/.partial/ENTRY/REVISION/PATH is resumed: its full chunks are hashed again
against the entry's chunk list and the good prefix kept (the rest is cut off). The missing
bytes come from the source in one stream; each chunk is checked as it lands and written only
when good; a bad one is fetched again (at most MAX_TRIES times, then the fetch fails naming the
file and chunk). The whole file's sha256 is checked, the part fsynced and renamed into place.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from agent.cache.index import CachedEntry
from agent.cache.layout import Place
from agent.cache.sources import Source, SourceError, Wanted

MAX_TRIES = 3
READ = 1 << 20


class FetchError(Exception):
    """A file could not be fetched or did not verify; one line."""


@dataclass(frozen=True)
class FileSpec:
    path: str
    size: int
    sha256: str
    chunks: tuple[str, ...]
    url: str = ""


@dataclass
class Moved:
    """What a fetch moved, for the task's result and its progress."""

    fetched: int = 0  # bytes downloaded
    resumed: int = 0  # bytes kept from a part file or found in place
    refetched: int = 0  # chunks that failed their sha256 and were fetched again
    started: float = field(default_factory=time.monotonic)

    def rate(self) -> float:
        """Bytes downloaded per second so far."""
        return self.fetched / max(time.monotonic() - self.started, 1e-6)


@dataclass(frozen=True)
class CacheResult:
    """What fetch_model and remove_model_cache answer: the entry as the cache now holds it
    (None: gone) and what the fetch moved."""

    record: CachedEntry | None
    moved: Moved | None = None


Tick = Callable[[], None]  # called after every chunk: the task reports progress


def chunk_bounds(size: int, chunk: int, index: int) -> tuple[int, int]:
    start = index * chunk
    return start, min(chunk, size - start)


def _hash_prefix(part: Path, spec: FileSpec, chunk: int) -> tuple[int, int, hashlib._Hash]:
    """(good bytes, bad chunks, the whole-file hash over the good bytes); the part is cut to
    the good prefix."""
    whole = hashlib.sha256()
    have = part.stat().st_size
    good = bad = 0
    with open(part, "r+b") as file:
        for index, expected in enumerate(spec.chunks):
            start, length = chunk_bounds(spec.size, chunk, index)
            if start + length > have:
                break
            data = file.read(length)
            if hashlib.sha256(data).hexdigest() != expected:
                bad = 1
                break
            whole.update(data)
            good = start + length
        file.truncate(good)
    return good, bad, whole


def hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(READ):
            digest.update(block)
    return digest.hexdigest()


def _accept(file: BinaryIO, whole: hashlib._Hash, data: bytes, expected: str) -> bool:
    """A chunk that matches its sha256 is written (and counted into the whole file's)."""
    if hashlib.sha256(data).hexdigest() != expected:
        return False
    whole.update(data)
    file.write(data)
    file.flush()
    return True


def _finish(file: BinaryIO) -> None:
    file.flush()
    os.fsync(file.fileno())
    file.close()


class Fetcher:
    def __init__(self, place: Place, source: Source, chunk: int, moved: Moved,
                 tick: Tick = lambda: None) -> None:  # fmt: skip
        self.place, self.source, self.chunk = place, source, chunk
        self.moved, self.tick = moved, tick

    async def fetch(self, spec: FileSpec) -> Path:
        """The file in place, checked; FetchError (its part file kept) when it cannot be."""
        part = self.place.part(spec.path)
        part.parent.mkdir(parents=True, exist_ok=True)
        part.touch()
        good, bad, whole = await asyncio.to_thread(_hash_prefix, part, spec, self.chunk)
        self.moved.resumed += good
        self.moved.refetched += bad
        self.tick()
        file = await asyncio.to_thread(open, part, "ab")
        try:
            index = good // self.chunk
            tries = 0
            while index < len(spec.chunks):
                index, tries = await self._stream(spec, file, whole, index, tries)
            await asyncio.to_thread(_finish, file)
        finally:
            file.close()
        if whole.hexdigest() != spec.sha256:
            part.unlink(missing_ok=True)
            raise FetchError(f"{spec.path}: sha256 {whole.hexdigest()[:16]}... does not match "
                             f"{spec.sha256[:16]}... though every chunk did: the registry's "
                             "record of it is wrong; pull the entry again")  # fmt: skip
        return await asyncio.to_thread(self.place.place, part, spec.path, spec.sha256)

    async def _stream(self, spec: FileSpec, file: BinaryIO, whole: hashlib._Hash, index: int,
                      tries: int) -> tuple[int, int]:  # fmt: skip
        """Read from chunk `index` to the end; back at the first bad chunk (index, tries)."""
        start, _ = chunk_bounds(spec.size, self.chunk, index)
        wanted = Wanted(self.place.entry, self.place.revision, spec.path, spec.url, start,
                        spec.size - start)  # fmt: skip
        buffer = bytearray()
        stream = None
        try:
            stream = self.source.read(wanted)
            async for block in stream:
                buffer += block
                self.moved.fetched += len(block)
                while index < len(spec.chunks):
                    _, length = chunk_bounds(spec.size, self.chunk, index)
                    if len(buffer) < length:
                        break
                    data = bytes(buffer[:length])
                    del buffer[:length]
                    # Hashing 16 MiB takes tens of milliseconds: off the event loop.
                    if not await asyncio.to_thread(_accept, file, whole, data, spec.chunks[index]):
                        self.moved.refetched += 1
                        if tries + 1 >= MAX_TRIES:
                            raise FetchError(f"{spec.path}: chunk {index} failed its sha256 "
                                             f"{MAX_TRIES} times: the registry's copy is "
                                             "damaged; pull the entry again")  # fmt: skip
                        return index, tries + 1
                    index, tries = index + 1, 0
                    self.tick()
        except SourceError as exc:
            raise FetchError(str(exc)) from None
        finally:
            if stream is not None:
                await _close(stream)
        if index < len(spec.chunks):
            raise FetchError(f"{spec.path}: the source ended at byte "
                             f"{chunk_bounds(spec.size, self.chunk, index)[0] + len(buffer)} "
                             f"of {spec.size}")  # fmt: skip
        return index, tries


async def _close(stream: object) -> None:
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()
