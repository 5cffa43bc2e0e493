"""The part file's writer: worker threads of its own per file fetched, so that the event loop
only receives while the bytes before are hashed, written and synced.

The hashing thread hashes a chunk's bytes as they arrive (`feed`, about 4 MiB at a time), so
that when its last byte is in only that piece is left to hash; it then compares the chunk's
sha256 (`put`) and hands a good chunk to the writing thread, which appends it. hashlib and file
writes release the GIL, so receiving, hashing and writing overlap. A third thread fdatasyncs
behind the writes, so the disk takes the file while the download goes on and the final fsync
waits for the last pieces only.

Jobs on each thread run in the order they were sent, so a chunk is written only right after its
predecessor: after a bad chunk the ones sent behind it are dropped until that chunk comes
again, and the part file always holds exactly the checked chunks before `expected`. Closing
goes the same way: once it is done, every write is.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from hashlib import _Hash

Bytes = bytes | memoryview


class Put(Enum):
    GOOD = "good"  # checked and written
    BAD = "bad"  # failed its sha256: not written
    DROPPED = "dropped"  # sent behind a bad chunk: not written


class Sink:
    def __init__(self, part: Path, expected: int) -> None:
        self.part = part
        self.expected = expected  # the chunk the part file needs next (the hashing thread's)
        self.file: BinaryIO | None = None
        self.failed = False  # a write failed: the writing thread writes no more
        self.hasher = ThreadPoolExecutor(1, thread_name_prefix="cache-hash")
        self.writer = ThreadPoolExecutor(1, thread_name_prefix="cache-write")
        self.syncer = ThreadPoolExecutor(1, thread_name_prefix="cache-sync")
        self.syncing: Future[None] | None = None
        self.loop = asyncio.get_running_loop()

    async def open(self) -> None:
        await asyncio.wrap_future(self.writer.submit(self._open))

    def feed(self, digest: _Hash, pieces: Sequence[Bytes]) -> None:
        """Some bytes of the chunk `digest` hashes, hashed on the hashing thread."""
        self.hasher.submit(_update, digest, pieces)

    def put(self, index: int, digest: _Hash, pieces: Sequence[Bytes],
            sha256: str) -> asyncio.Future[Put]:  # fmt: skip
        """Chunk `index`, all its bytes fed to `digest` and here in `pieces`: checked and, when
        good, appended. An OSError of the write is the future's."""
        outcome: Future[Put] = Future()
        self.hasher.submit(self._check, index, digest, pieces, sha256, outcome)
        return asyncio.wrap_future(outcome, loop=self.loop)

    async def close(self, sync: bool) -> None:
        """Every chunk sent is settled and the file closed (flushed, and fsynced when `sync`);
        the threads end. A cancel does not stop the close: it is queued behind the writes
        and runs anyway."""
        done: Future[None] = Future()
        self.hasher.submit(self._pass_close, sync, done)
        self.hasher.shutdown(wait=False)
        await asyncio.shield(asyncio.wrap_future(done, loop=self.loop))

    def _open(self) -> None:
        self.file = open(self.part, "ab")  # noqa: SIM115 - closed by the close job

    def _check(self, index: int, digest: _Hash, pieces: Sequence[Bytes], sha256: str,
               outcome: Future[Put]) -> None:  # fmt: skip
        if index != self.expected:
            outcome.set_result(Put.DROPPED)
        elif digest.hexdigest() != sha256:
            outcome.set_result(Put.BAD)
        else:
            self.expected += 1
            self.writer.submit(self._write, pieces, outcome)

    def _write(self, pieces: Sequence[Bytes], outcome: Future[Put]) -> None:
        if self.failed or self.file is None:
            outcome.set_result(Put.DROPPED)
            return
        try:
            self.file.writelines(pieces)
            self.file.flush()
        except OSError as exc:
            self.failed = True
            outcome.set_exception(exc)
        else:
            outcome.set_result(Put.GOOD)
            if self.syncing is None or self.syncing.done():
                self._sync_behind()

    def _sync_behind(self) -> None:
        """What was written so far, onto the disk in the background; an error is the close's
        (fsync would not report it again)."""
        if self.syncing is not None and self.syncing.exception() is not None:
            return
        assert self.file is not None
        self.syncing = self.syncer.submit(os.fdatasync, self.file.fileno())

    def _pass_close(self, sync: bool, done: Future[None]) -> None:
        self.writer.submit(self._close, sync, done)
        self.writer.shutdown(wait=False)

    def _close(self, sync: bool, done: Future[None]) -> None:
        file, self.file = self.file, None
        self.syncer.shutdown(wait=True)  # a sync behind still running: its file stays open
        try:
            if file is not None:
                try:
                    file.flush()
                    if sync and self.syncing is not None:
                        self.syncing.result()  # its error, once seen, fsync would not repeat
                    if sync:
                        os.fsync(file.fileno())
                finally:
                    file.close()
        except OSError as exc:
            done.set_exception(exc)
        else:
            done.set_result(None)


def _update(digest: _Hash, pieces: Sequence[Bytes]) -> None:
    for piece in pieces:
        digest.update(piece)


def quiet(future: asyncio.Future[Put]) -> None:
    """A result nobody waits for any more: its exception (if any) is taken, not logged."""
    future.add_done_callback(lambda done: done.cancelled() or done.exception())
