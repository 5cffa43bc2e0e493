"""The cluster's wheel cache on the hub's disk (issue 15, one compile per cluster): each
llama-cpp-python wheel a node compiled, kept under its compatibility key so that every
compatible node installs it instead of compiling it again.

Layout: ROOT/<key>/meta.json (the WheelMeta as protobuf JSON) and ROOT/<key>/<filename>, the
same as the agent tests' server (tests/agent/wheel_server.py), so directories are
interchangeable. A wheel appears whole or not at all: an upload streams into a directory
ROOT/.upload-*, hashing as it goes, checks size and sha256 against its meta, syncs, and is
renamed into place; the rename decides between two uploads of one key (the second is
refused as held already). A removal renames the directory away before deleting it. What a
crash left behind (.upload-*, .remove-*) is removed by `prepare()` at start. File IO runs in
worker threads, one chunk at a time, so a transfer of hundreds of MB never holds the event
loop. WheelMeta <-> Wheel is converted here and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, ParamSpec, TypeVar

from google.protobuf import json_format

from gpufleet import envkey
from gpufleet.v1 import agent_link_pb2 as pb
from hub import limits

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")

META = "meta.json"
UPLOAD_PREFIX, REMOVE_PREFIX = ".upload-", ".remove-"
MAX_BYTES = 4 << 30  # one wheel (a CUDA wheel for many architectures is a few hundred MB)
MARGIN_BYTES = 1 << 30  # free space an upload must leave on the cache's file system
MIN_PREFIX = 8  # characters of a key that name a wheel in RemoveWheel
MAX_PARTS = 16
HEX = frozenset("0123456789abcdef")
FIX = "hubctl envs cache lists them, hubctl envs cache rm KEY removes one"


class WheelError(Exception):
    """A refused request; the message is one line naming the fix. `kind` picks the status:
    invalid, exists, mismatch, space, not_found, ambiguous, damaged."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Wheel:
    key: str  # sha256 hex of the canonical compatibility key (gpufleet.envkey)
    filename: str
    size: int
    sha256: str
    parts: Mapping[str, str] = field(default_factory=dict)
    built_on: str = ""
    built_at: datetime | None = None


def is_hex(value: str, chars: int | None = None) -> bool:
    return bool(value) and set(value) <= HEX and (chars is None or len(value) == chars)


def check_key(key: str) -> str:
    if not is_hex(key, 64):
        raise WheelError("invalid", f"wheel key {key[:80]!r} is not 64 lowercase hex characters "
                         "(a sha256)")  # fmt: skip
    return key


def check_filename(name: str) -> str:
    plain = os.path.basename(name) == name and "\\" not in name and name.isprintable()
    if not (plain and name.endswith(".whl") and not name.startswith(".") and len(name) <= 255):
        raise WheelError("invalid", f"wheel file name {name[:80]!r} is not a plain *.whl name")
    return name


def wheel_from_proto(meta: pb.WheelMeta) -> Wheel:
    """A checked Wheel; WheelError (invalid) naming the field otherwise."""
    check_key(meta.key)
    if not is_hex(meta.sha256, 64):
        raise WheelError("invalid", f"sha256 {meta.sha256[:80]!r} is not 64 lowercase hex "
                         "characters")  # fmt: skip
    if len(meta.parts) > MAX_PARTS:
        raise WheelError("invalid", f"{len(meta.parts)} key parts: at most {MAX_PARTS}")
    try:
        parts = {limits.text("part", k, 32): limits.text(f"part {k}", v, 256)
                 for k, v in sorted(meta.parts.items())}  # fmt: skip
        built_on = limits.text("built_on", meta.built_on, 253)
    except limits.OutOfBounds as exc:
        raise WheelError("invalid", str(exc)) from None
    if envkey.key(parts) != meta.key:
        raise WheelError("invalid", f"key {meta.key[:12]} is not the sha256 of its parts "
                         f"({envkey.describe(parts)})")  # fmt: skip
    try:
        built_at = meta.built_at.ToDatetime(tzinfo=UTC) if meta.HasField("built_at") else None
    except ValueError:  # seconds past year 9999 or before year 1
        raise WheelError("invalid", f"built_at {meta.built_at.seconds} is not a valid time "
                         "(seconds since 1970)") from None  # fmt: skip
    return Wheel(meta.key, check_filename(meta.filename), meta.size, meta.sha256, parts,
                 built_on, built_at)  # fmt: skip


def wheel_to_proto(wheel: Wheel) -> pb.WheelMeta:
    found = pb.WheelMeta(key=wheel.key, filename=wheel.filename, size=wheel.size,
                         sha256=wheel.sha256, parts=dict(wheel.parts),
                         built_on=wheel.built_on)  # fmt: skip
    if wheel.built_at is not None:
        found.built_at.FromDatetime(wheel.built_at)
    return found


def _sync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _create(path: Path) -> BinaryIO:
    return open(path, "wb")


Write = Callable[[BinaryIO, bytes], object]


def _write(file: BinaryIO, data: bytes) -> None:
    file.write(data)


async def _receive(
    wheel: Wheel, chunks: AsyncIterator[bytes], write: Callable[[bytes], Awaitable[object]]
) -> None:
    """Write the chunks, hashing them; WheelError (mismatch) unless size and sha256 agree with
    the meta (a sender that goes past the size is stopped there)."""
    digest, size = hashlib.sha256(), 0
    async for data in chunks:
        size += len(data)
        if size > wheel.size:
            raise WheelError("mismatch", f"{wheel.filename}: more than the {wheel.size} bytes "
                             "its meta says: upload it again")  # fmt: skip
        digest.update(data)
        await write(data)
    found = digest.hexdigest()
    if size != wheel.size or found != wheel.sha256:
        raise WheelError("mismatch", f"{wheel.filename}: {size} bytes with sha256 {found[:12]}, "
                         f"its meta says {wheel.size} bytes with {wheel.sha256[:12]}: upload "
                         "it again")  # fmt: skip


def _finish(file: BinaryIO, directory: Path, meta: str) -> None:
    file.flush()
    os.fsync(file.fileno())
    file.close()
    with open(directory / META, "w") as out:
        out.write(meta)
        out.flush()
        os.fsync(out.fileno())
    _sync_directory(directory)


class WheelStore:
    """The wheels under `root`. `max_bytes` caps one wheel; an upload must leave
    `margin_bytes` free (besides what uploads in progress will take). `free` and `write` are
    the disk (free bytes under a path; writing one chunk to a wheel's file)."""

    def __init__(
        self,
        root: Path,
        max_bytes: int = MAX_BYTES,
        margin_bytes: int = MARGIN_BYTES,
        free: Callable[[Path], int] = lambda path: shutil.disk_usage(path).free,
        write: Write = _write,
    ) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.margin_bytes = margin_bytes
        self._free = free
        self._write = write
        self._reserved: dict[str, int] = {}  # upload id -> bytes it will write

    def prepare(self) -> int:
        """Create the directory; remove what an interrupted upload or removal left. Returns
        how many leftovers were removed."""
        self.root.mkdir(parents=True, exist_ok=True)
        removed = 0
        for entry in self.root.iterdir():
            if entry.name.startswith((UPLOAD_PREFIX, REMOVE_PREFIX)):
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
        if removed:
            log.info("wheel cache: removed %d leftovers of interrupted transfers", removed)
        return removed

    def _read(self, directory: Path) -> Wheel | None:
        try:
            meta = json_format.Parse((directory / META).read_text(), pb.WheelMeta(),
                                     ignore_unknown_fields=True)  # fmt: skip
            wheel = wheel_from_proto(meta)
        except (OSError, json_format.ParseError, WheelError) as exc:
            if not isinstance(exc, FileNotFoundError):
                log.warning("wheel cache: %s is unreadable (%s): remove it", directory, exc)
            return None
        return wheel if wheel.key == directory.name else None

    def list(self) -> list[Wheel]:
        """Every wheel held, by key."""
        if not self.root.is_dir():
            return []
        found = (self._read(e) for e in sorted(self.root.iterdir()) if is_hex(e.name, 64))
        return [wheel for wheel in found if wheel is not None]

    def get(self, key: str) -> Wheel | None:
        return self._read(self.root / key) if is_hex(key, 64) else None

    def path(self, wheel: Wheel) -> Path:
        return self.root / wheel.key / wheel.filename

    def resolve(self, prefix: str) -> Wheel:
        """The one wheel whose key starts with `prefix` (at least MIN_PREFIX characters)."""
        if len(prefix) < MIN_PREFIX or not is_hex(prefix) or len(prefix) > 64:
            raise WheelError("invalid", f"{prefix[:80]!r} is not a wheel key or a prefix of "
                             f"at least {MIN_PREFIX} hex characters: {FIX}")  # fmt: skip
        found = [w for w in self.list() if w.key.startswith(prefix)]
        if not found:
            raise WheelError("not_found", f"no cached wheel with key {prefix}: {FIX}")
        if len(found) > 1:
            raise WheelError("ambiguous", f"{prefix} names {len(found)} cached wheels "
                             f"({', '.join(w.key[:16] for w in found[:5])}): give more of the "
                             "key")  # fmt: skip
        return found[0]

    def remove(self, key: str) -> Wheel:
        """Delete a wheel (renamed away first: a download already started finishes)."""
        wheel = self.get(key)
        if wheel is None:
            raise WheelError("not_found", f"no cached wheel with key {key[:64]}: {FIX}")
        gone = self.root / f"{REMOVE_PREFIX}{key[:16]}-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(self.root / key, gone)
        except FileNotFoundError:
            raise WheelError("not_found", f"no cached wheel with key {key[:64]}: {FIX}") from None
        shutil.rmtree(gone, ignore_errors=True)
        return wheel

    def _admit(self, wheel: Wheel) -> None:
        if wheel.size > self.max_bytes:
            raise WheelError("space", f"{wheel.filename} is {wheel.size} bytes: the hub's cache "
                             f"takes wheels of at most {self.max_bytes} bytes; build with "
                             "fewer extra GPU targets")  # fmt: skip
        if self.get(wheel.key) is not None:
            raise WheelError("exists", f"the cache holds {wheel.key[:12]} already")
        needed = wheel.size + self.margin_bytes + sum(self._reserved.values())
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            free = self._free(self.root)
        except OSError as exc:  # a read-only or failing state dir: one line, not a traceback
            raise self._failed(wheel, exc.errno, exc.strerror or str(exc)) from None
        if free < needed:
            raise WheelError("space", f"the hub's disk has {free >> 20} MiB free at {self.root}, "
                             f"{needed >> 20} MiB needed for {wheel.filename}: free some space "
                             f"({FIX})")  # fmt: skip

    async def put(self, wheel: Wheel, chunks: AsyncIterator[bytes]) -> Wheel:
        """Store the wheel streamed by `chunks`, checked against its meta; WheelError when it
        is refused (held already, too large, no space, size or sha256 not matching, the disk
        failing: nothing is left behind then)."""
        self._admit(wheel)
        upload = uuid.uuid4().hex[:8]
        directory = self.root / f"{UPLOAD_PREFIX}{wheel.key[:16]}-{upload}"
        self._reserved[upload] = wheel.size
        try:
            await self._disk(wheel, directory.mkdir)
            file = await self._disk(wheel, _create, directory / wheel.filename)
            try:
                await _receive(
                    wheel, chunks, lambda data: self._disk(wheel, self._write, file, data)
                )
                meta = json_format.MessageToJson(wheel_to_proto(wheel))
                await self._disk(wheel, _finish, file, directory, meta)
            finally:
                with contextlib.suppress(OSError):  # closed by _finish, or refused already
                    file.close()
            await self._disk(wheel, self._place, directory, wheel)
            return wheel
        finally:
            self._reserved.pop(upload, None)
            if directory.exists():
                await asyncio.to_thread(shutil.rmtree, directory, True)

    async def _disk(
        self, wheel: Wheel, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """One file operation of an upload, in a worker thread; the disk filling up or
        failing under it (ENOSPC, EDQUOT, EIO) is a one-line WheelError."""
        try:
            return await asyncio.to_thread(call, *args, **kwargs)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            log.warning("wheel cache: storing %s failed: %s", wheel.filename, exc)
            raise self._failed(wheel, exc.errno, reason) from None

    def _failed(self, wheel: Wheel, code: int | None, reason: str) -> WheelError:
        if code in (errno.ENOSPC, errno.EDQUOT):
            return WheelError("space", f"no space left for {wheel.filename} in the hub's state "
                              f"dir ({self.root}: {reason}): free space on the hub ({FIX}); "
                              "the next build uploads it again")  # fmt: skip
        return WheelError("damaged", f"the hub could not store {wheel.filename} in {self.root} "
                          f"({reason}): check the hub's disk; the next build uploads it "
                          "again")  # fmt: skip

    def _place(self, directory: Path, wheel: Wheel) -> None:
        try:
            os.rename(directory, self.root / wheel.key)
        except OSError as exc:  # another upload of the key was renamed into place first
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise WheelError("exists", f"the cache holds {wheel.key[:12]} already") from None
            raise
        _sync_directory(self.root)


def describe(wheel: Wheel) -> str:
    """For logs: "llama-cpp-python 0.3.36 cpu, x86_64 glibc 2.36 cp311 (22.7 MiB)"."""
    return f"{envkey.describe(wheel.parts)} ({wheel.size / (1 << 20):.1f} MiB)"
