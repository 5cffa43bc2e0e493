"""An import's bytes into the registry (`hubctl registry import NAME PATH`): the header's files
arrive in order, each written to a scratch file while its sha256 and chunk hashes are computed,
checked against the header once its last byte is in, then put into the object store. Bounded:
each message at most 1 MiB, each file at most as long as the header says.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from gpufleet.v1 import registry_pb2 as pb
from hub.registry.convert import import_files
from hub.registry.entries import (
    IMPORT,
    LAYOUTS,
    Entry,
    EntryFile,
    Hasher,
    Invalid,
    check_files,
    check_name,
    check_repo,
    import_revision,
)
from hub.registry.store import ObjectStore

MAX_MESSAGE = 1024 * 1024  # bytes of data in one ImportData
# The initial metadata the hub sends once it accepted an import's header: a client waits for it
# before it sends data (a refusal of the header is then the call's status, not a failed write).
ACCEPTED = ("gpufleet-import", "accepted")


class DiskError(Exception):
    """A write on the hub's disk failed: `where` names the directory, `error` is the OSError."""

    def __init__(self, where: str, error: OSError) -> None:
        super().__init__(f"{where}: {error.strerror or error}")
        self.where, self.error = where, error


class ImportRefused(Exception):
    """kind: invalid, mismatch, truncated; the message is one line."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def header(start: pb.ImportStart) -> Entry:
    """The entry an import's first message describes (state pulling, no chunks yet).
    Invalid (one line) when the header is not acceptable."""
    name = check_name(start.name)
    layout = start.layout or "files"
    if layout not in LAYOUTS:
        raise Invalid(f"layout {layout[:40]!r}: files (plain files, e.g. GGUF) or hf (the Hugging "
                      "Face cache layout, with --repo ORG/NAME)")  # fmt: skip
    repo = ""
    if layout == "hf":
        if not start.repo:
            raise Invalid("the hf layout needs the repository id: --repo ORG/NAME")
        repo = check_repo(start.repo)
    elif start.repo:
        raise Invalid("--repo is for the hf layout only")
    files = check_files(import_files(start))
    return Entry(
        name=name, source=IMPORT, revision=import_revision(files), layout=layout, repo=repo,
        files=tuple(EntryFile(path, size, sha256) for path, size, sha256 in files),
        message="importing",
    )  # fmt: skip


@dataclass
class Receiver:
    """Takes ImportData messages in order; each complete, checked file goes to the store."""

    entry: Entry
    objects: ObjectStore
    scratch: Path
    done: list[EntryFile] = field(default_factory=list)
    _file: BinaryIO | None = None
    _hasher: Hasher = field(default_factory=Hasher)
    _name: str = ""  # the scratch file of the file being received

    @property
    def _current(self) -> EntryFile | None:
        files = self.entry.files
        return files[len(self.done)] if len(self.done) < len(files) else None

    async def start(self) -> None:
        await self._advance()

    async def feed(self, data: pb.ImportData) -> None:
        current = self._current
        if len(data.data) > MAX_MESSAGE:
            raise ImportRefused("invalid", f"a message of {len(data.data)} bytes: send each "
                                f"file's data in pieces of at most {MAX_MESSAGE}")  # fmt: skip
        if current is None:
            raise ImportRefused("invalid", f"data for {data.path[:120]!r} after the last file "
                                "of the header")  # fmt: skip
        if data.path != current.path:
            raise ImportRefused("invalid", f"data for {data.path[:120]!r} while "
                                f"{current.path} is incomplete: send the header's files whole, "
                                "in its order")  # fmt: skip
        if self._hasher.size + len(data.data) > current.size:
            raise ImportRefused("invalid", f"{current.path}: more than the header's "
                                f"{current.size} bytes")  # fmt: skip
        try:
            if self._file is None:
                self._file = await asyncio.to_thread(self._open)
            await asyncio.to_thread(self._write, self._file, data.data)
        except OSError as exc:
            raise DiskError(f"the import scratch directory {self.scratch.parent}", exc) from None
        if self._hasher.size == current.size:
            await self._complete(current)
            await self._advance()

    async def finish(self) -> tuple[EntryFile, ...]:
        """Every file, checked and stored; ImportRefused when the stream ended early."""
        current = self._current
        if current is not None:
            raise ImportRefused("truncated", f"the import ended after {self._hasher.size} of "
                                f"{current.size} bytes of {current.path}: send every file of "
                                "the header whole")  # fmt: skip
        return tuple(self.done)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _open(self) -> BinaryIO:
        fd, name = tempfile.mkstemp(dir=self.scratch, prefix="import-")
        self._name = name
        return os.fdopen(fd, "wb")

    def _write(self, file: BinaryIO, data: bytes) -> None:
        file.write(data)
        self._hasher.update(data)

    async def _advance(self) -> None:
        """Past the files of no bytes, which have no data message."""
        current = self._current
        while current is not None and current.size == 0:
            await self._complete(current)
            current = self._current

    async def _complete(self, expected: EntryFile) -> None:
        try:
            if self._file is None:
                self._file = await asyncio.to_thread(self._open)
            file, self._file = self._file, None
            await asyncio.to_thread(_close, file)
        except OSError as exc:
            raise DiskError(f"the import scratch directory {self.scratch.parent}", exc) from None
        hasher, self._hasher = self._hasher, Hasher(self.entry.chunk_size)
        try:
            if hasher.sha256 != expected.sha256:
                raise ImportRefused("mismatch", f"{expected.path}: sha256 {hasher.sha256} is not "
                                    f"the header's {expected.sha256}: the file changed or was "
                                    "damaged on the way; import it again")  # fmt: skip
            try:
                await self.objects.put_file(self.entry.key(expected.path), Path(self._name))
            except OSError as exc:
                raise DiskError(f"the registry ({self.objects.describe()})", exc) from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._name)
        self.done.append(hasher.file(expected.path))


def _close(file: BinaryIO) -> None:
    file.flush()
    file.close()
