"""Fetching one file of an entry into the cache, verified chunk by chunk.

A part file in ROOT/.partial/ENTRY/REVISION/PATH is resumed: its full chunks are hashed again
against the entry's chunk list and the good prefix kept (the rest is cut off). The missing
bytes come from the source in one stream, and the work overlaps: the event loop only receives,
and each chunk, once its bytes are in, goes to the file's worker thread (agent/cache/sink.py),
which hashes it and appends it when good while the next one arrives. At most IN_FLIGHT chunks
wait there, so a fetch holds at most IN_FLIGHT + 1 chunks in memory. A bad chunk is fetched
again (at most MAX_TRIES times, then the fetch fails naming the file and chunk). The part is
fsynced and renamed into place.

There is no second pass for the whole file's sha256: the hub computes a file's chunk hashes
from the same bytes, in the same pass, as its sha256 (hub/registry/entries.py Hasher), so a
file whose every chunk matched is byte for byte the file the hub hashed, and hashing it all
again would cost a full sha256 of every file while adding no assurance. A file with no chunk
list (an empty one) is checked by its whole sha256.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from agent.cache.index import CachedEntry
from agent.cache.layout import Place
from agent.cache.sink import Bytes, Put, Sink, quiet
from agent.cache.sources import Source, SourceError, Wanted

MAX_TRIES = 3
IN_FLIGHT = 2  # chunks handed to the sink and not yet settled, at most
FEED = 4 << 20  # bytes of a chunk handed to the hashing thread at a time, at least
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
Sent = deque[tuple[int, "asyncio.Future[Put]"]]


def chunk_bounds(size: int, chunk: int, index: int) -> tuple[int, int]:
    start = index * chunk
    return start, min(chunk, size - start)


def _hash_prefix(part: Path, spec: FileSpec, chunk: int) -> tuple[int, int, int]:
    """(good bytes, good chunks, bad chunks) of a part file; it is cut to the good prefix."""
    have = part.stat().st_size
    good = count = bad = 0
    with open(part, "r+b") as file:
        for index, expected in enumerate(spec.chunks):
            start, length = chunk_bounds(spec.size, chunk, index)
            if start + length > have:
                break
            if hashlib.sha256(file.read(length)).hexdigest() != expected:
                bad = 1
                break
            good, count = start + length, index + 1
        file.truncate(good)
    return good, count, bad


def hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(READ):
            digest.update(block)
    return digest.hexdigest()


def _check_unchunked(spec: FileSpec) -> None:
    """A file with no chunk list: empty, with the empty file's sha256."""
    if spec.size:
        raise FetchError(f"{spec.path}: the registry lists no chunk hashes for its {spec.size} "
                         "bytes; pull the entry again")  # fmt: skip
    digest = hashlib.sha256(b"").hexdigest()
    if digest != spec.sha256:
        raise FetchError(f"{spec.path}: sha256 {digest[:16]}... does not match "
                         f"{spec.sha256[:16]}...: the registry's record of it is wrong; pull "
                         "the entry again")  # fmt: skip


class Fetcher:
    def __init__(self, place: Place, source: Source, chunk: int, moved: Moved,
                 tick: Tick = lambda: None) -> None:  # fmt: skip
        self.place, self.source, self.chunk = place, source, chunk
        self.moved, self.tick = moved, tick

    async def fetch(self, spec: FileSpec) -> Path:
        """The file in place, checked; FetchError (its part file kept) when it cannot be."""
        if not spec.chunks:
            _check_unchunked(spec)
        part = self.place.part(spec.path)
        part.parent.mkdir(parents=True, exist_ok=True)
        part.touch()
        good, index, bad = await asyncio.to_thread(_hash_prefix, part, spec, self.chunk)
        self.moved.resumed += good
        self.moved.refetched += bad
        self.tick()
        sink = Sink(part, index)
        complete = False
        try:
            await sink.open()
            tries = 0
            while index < len(spec.chunks):
                index, tries = await self._stream(spec, sink, index, tries)
            complete = True
        finally:
            await sink.close(sync=complete)
        return await asyncio.to_thread(self.place.place, part, spec.path, spec.sha256)

    async def _stream(self, spec: FileSpec, sink: Sink, index: int,
                      tries: int) -> tuple[int, int]:  # fmt: skip
        """Read from chunk `index` to the end, each chunk handed to the sink once its bytes
        are in; back at the first bad chunk: (its index, tries)."""
        start, _ = chunk_bounds(spec.size, self.chunk, index)
        wanted = Wanted(self.place.entry, self.place.revision, spec.path, spec.url, start,
                        spec.size - start)  # fmt: skip
        sent: Sent = deque()
        pieces: list[Bytes] = []  # chunk `index`'s bytes so far
        have = fed = unfed = 0  # bytes in pieces; pieces fed to the hash, bytes not yet
        digest = hashlib.sha256()
        stream = None
        try:
            stream = self.source.read(wanted)
            async for block in stream:
                self.moved.fetched += len(block)
                view = memoryview(block)
                while view and index < len(spec.chunks):
                    _, length = chunk_bounds(spec.size, self.chunk, index)
                    piece, view = view[: length - have], view[length - have :]
                    pieces.append(piece)
                    have += len(piece)
                    unfed += len(piece)
                    if have == length:
                        sink.feed(digest, pieces[fed:])
                        sent.append((index, sink.put(index, digest, pieces,
                                                     spec.chunks[index])))  # fmt: skip
                        index, pieces, have, fed, unfed = index + 1, [], 0, 0, 0
                        digest = hashlib.sha256()
                    elif unfed >= FEED:
                        sink.feed(digest, pieces[fed:])
                        fed, unfed = len(pieces), 0
                while sent and (sent[0][1].done() or len(sent) > IN_FLIGHT):
                    if (back := await self._settle(spec, sent, tries)) is not None:
                        return back
                    tries = 0
            while sent:
                if (back := await self._settle(spec, sent, tries)) is not None:
                    return back
                tries = 0
        except SourceError as exc:
            raise FetchError(str(exc)) from None
        finally:
            for _, future in sent:
                quiet(future)
            if stream is not None:
                await _close(stream)
        if index < len(spec.chunks):
            raise FetchError(f"{spec.path}: the source ended at byte "
                             f"{chunk_bounds(spec.size, self.chunk, index)[0] + have} "
                             f"of {spec.size}")  # fmt: skip
        return index, tries

    async def _settle(self, spec: FileSpec, sent: Sent, tries: int) -> tuple[int, int] | None:
        """The oldest chunk sent, once the worker is done with it: None when it was written,
        else where to fetch again from (its index, tries)."""
        index, future = sent[0]
        # Shielded: a cancel leaves the chunk to be written; the sink's close waits for it.
        put = await asyncio.shield(future)
        sent.popleft()
        if put is Put.GOOD:
            self.tick()
            return None
        self.moved.refetched += 1
        if tries + 1 >= MAX_TRIES:
            raise FetchError(f"{spec.path}: chunk {index} failed its sha256 {MAX_TRIES} times: "
                             "the registry's copy is damaged; pull the entry again")  # fmt: skip
        return index, tries + 1


async def _close(stream: object) -> None:
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()
