"""The embedded object store: a directory (STATE_DIR/registry by default), one file per key.
A put copies into a temporary file under .partial/, syncs it and renames it into place, so a
reader never sees half an object; a restart sweeps what an interrupted put left."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from hub.registry.store import READ_PIECE, NotFound, StoreError

PARTIAL = ".partial"


class LocalStore:
    kind = "local"

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if any(part in ("", ".", "..") for part in parts) or parts[0] == PARTIAL:
            raise StoreError(f"invalid object key {key[:120]!r}")
        return self.root.joinpath(*parts)

    async def prepare(self) -> None:
        def sweep() -> None:
            self.root.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(self.root / PARTIAL, ignore_errors=True)
            (self.root / PARTIAL).mkdir()
            if not os.access(self.root, os.W_OK):
                raise PermissionError(f"{self.root} is not writable")

        try:
            await asyncio.to_thread(sweep)
        except OSError as exc:
            raise StoreError(f"cannot use the registry directory {self.root}: "
                             f"{exc.strerror or exc}; fix its permissions or choose another "
                             "with --registry") from None  # fmt: skip

    async def put_file(self, key: str, path: Path) -> None:
        target = self._path(key)
        await asyncio.to_thread(self._put, target, path)

    def _put(self, target: Path, path: Path) -> None:
        partial = self.root / PARTIAL
        partial.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=partial, prefix="put-")
        try:
            with os.fdopen(fd, "wb") as out, open(path, "rb") as source:
                shutil.copyfileobj(source, out, 8 * READ_PIECE)
                out.flush()
                os.fsync(out.fileno())
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(name, target)
            _sync_dir(target.parent)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
            raise

    async def read(self, key: str, offset: int = 0,
                   length: int | None = None) -> AsyncIterator[bytes]:  # fmt: skip
        path = self._path(key)
        try:
            file = await asyncio.to_thread(_open, path, offset)
        except (FileNotFoundError, IsADirectoryError):
            raise NotFound(f"no object {key}") from None
        try:
            left = length
            while left is None or left > 0:
                want = READ_PIECE if left is None else min(READ_PIECE, left)
                data = await asyncio.to_thread(file.read, want)
                if not data:
                    return
                if left is not None:
                    left -= len(data)
                yield data
        finally:
            file.close()

    async def size(self, key: str) -> int | None:
        try:
            return (await asyncio.to_thread(self._path(key).stat)).st_size
        except FileNotFoundError:
            return None

    async def delete_prefix(self, prefix: str) -> None:
        target = self._path(prefix.rstrip("/"))
        await asyncio.to_thread(shutil.rmtree, target, True)
        parent = target.parent
        while parent != self.root:  # empty directories above it go too
            try:
                await asyncio.to_thread(parent.rmdir)
            except OSError:
                break
            parent = parent.parent

    def presign(self, key: str, expires_s: int) -> str | None:
        return None

    async def free_bytes(self) -> int | None:
        found = await asyncio.to_thread(os.statvfs, self.root)
        return found.f_bavail * found.f_frsize

    def describe(self) -> str:
        return f"directory {self.root}"


def _open(path: Path, offset: int) -> BinaryIO:
    file = open(path, "rb")  # noqa: SIM115 (closed by the reader)
    file.seek(offset)
    return file


def _sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
