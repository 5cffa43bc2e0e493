"""Registry entries as the hub sees them, the checks of what names them, and the streaming
hasher every import and pull runs over a file's bytes as they arrive (sha256 of the whole file
and of each CHUNK_SIZE piece: what nodes verify their fetches against).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePosixPath

from hub.models.checks import LABEL

CHUNK_SIZE = 16 * 1024 * 1024  # bytes per verified chunk (RegistryEntry.chunk_size)
MAX_FILE_SIZE = 1 << 40  # 1 TiB
MAX_FILES = 100_000
MAX_PATH = 1000  # characters of a file's path in an entry
LAYOUTS = ("files", "hf")
PULLING, READY, FAILED = "pulling", "ready", "failed"
STATES = (PULLING, READY, FAILED)
IMPORT = "import"  # RegistryEntry.source of an import; a pull's is hf:ORG/NAME

SHA256 = re.compile(r"^[0-9a-f]{64}$")
# A Hugging Face repository id: ORG/NAME (letters, digits, '-', '_', '.'; no '--' or '..').
REPO = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?/"
                  r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$")  # fmt: skip


class Invalid(ValueError):
    """A name, path or file list that the registry refuses; the message says what to change."""


@dataclass(frozen=True)
class EntryFile:
    path: str  # relative to the entry: "config.json", "sub/model-00001-of-00002.safetensors"
    size: int
    sha256: str
    chunks: tuple[str, ...] = ()  # sha256 of each CHUNK_SIZE piece in order


@dataclass(frozen=True)
class Entry:
    name: str
    source: str  # hf:ORG/NAME or import
    revision: str  # the Hub's commit; for an import the sha256 of its file list
    layout: str = "files"  # files or hf
    repo: str = ""  # hf layout: ORG/NAME
    files: tuple[EntryFile, ...] = ()
    state: str = PULLING
    message: str = ""
    pulled: datetime | None = None  # when it became ready
    chunk_size: int = CHUNK_SIZE

    @property
    def size(self) -> int:
        return sum(file.size for file in self.files)

    @property
    def ready(self) -> bool:
        return self.state == READY

    @property
    def prefix(self) -> str:
        """Where its objects live in the object store: every key starts so."""
        return f"{self.name}/{self.revision}/"

    def key(self, path: str) -> str:
        return self.prefix + path

    def file(self, path: str) -> EntryFile | None:
        return next((f for f in self.files if f.path == path), None)


@dataclass
class Hasher:
    """sha256 of everything fed, and of each `chunk_size` piece (the last may be shorter)."""

    chunk_size: int = CHUNK_SIZE
    size: int = 0
    _whole: hashlib._Hash = field(default_factory=hashlib.sha256)
    _piece: hashlib._Hash = field(default_factory=hashlib.sha256)
    _filled: int = 0
    _chunks: list[str] = field(default_factory=list)

    def update(self, data: bytes) -> None:
        self._whole.update(data)
        self.size += len(data)
        view = memoryview(data)
        while view:
            room = self.chunk_size - self._filled
            self._piece.update(view[:room])
            self._filled += min(room, len(view))
            view = view[room:]
            if self._filled == self.chunk_size:
                self._chunks.append(self._piece.hexdigest())
                self._piece, self._filled = hashlib.sha256(), 0

    @property
    def sha256(self) -> str:
        return self._whole.hexdigest()

    @property
    def chunks(self) -> tuple[str, ...]:
        """The chunks' hashes so far, the partial last one included."""
        tail = [self._piece.hexdigest()] if self._filled else []
        return (*self._chunks, *tail)

    def file(self, path: str) -> EntryFile:
        return EntryFile(path, self.size, self.sha256, self.chunks)


def check_name(name: str) -> str:
    if not LABEL.match(name):
        raise Invalid(
            f"invalid entry name {name[:80]!r}: a DNS label, 1 to 63 lowercase letters, digits "
            "or '-', starting and ending with a letter or digit (e.g. qwen3-8b)"
        )
    return name


def check_repo(repo: str) -> str:
    if not REPO.match(repo) or "--" in repo or ".." in repo:
        raise Invalid(f"invalid repository {repo[:120]!r}: a Hugging Face id ORG/NAME "
                      "(e.g. Qwen/Qwen3-8B)")  # fmt: skip
    return repo


def check_path(path: str) -> str:
    """A relative path inside an entry: no '..', no empty or '.' parts, no backslash."""
    parts = path.split("/")
    if (
        not path
        or len(path) > MAX_PATH
        or not path.isprintable()
        or "\\" in path
        or any(part in ("", ".", "..") for part in parts)
    ):
        raise Invalid(f"invalid file path {path[:120]!r} in the entry: a relative path such as "
                      "model.gguf or sub/config.json (no '..', no leading '/')")  # fmt: skip
    return str(PurePosixPath(path))


def check_sha256(sha256: str, path: str) -> str:
    if not SHA256.match(sha256):
        raise Invalid(f"{path}: sha256 {sha256[:80]!r} is not 64 lowercase hex digits")
    return sha256


def check_files(files: Iterable[tuple[str, int, str]]) -> list[tuple[str, int, str]]:
    """(path, size, sha256) of an import's header: bounded, each checked, no path twice and
    none both a file and a directory."""
    checked: list[tuple[str, int, str]] = []
    seen: set[str] = set()
    for path, size, sha256 in files:
        if len(checked) == MAX_FILES:
            raise Invalid(f"more than {MAX_FILES} files: an entry holds at most {MAX_FILES}")
        path = check_path(path)
        if path in seen:
            raise Invalid(f"{path} is listed twice")
        if size > MAX_FILE_SIZE:
            raise Invalid(f"{path}: {size} bytes; a file in the registry is at most 1 TiB")
        seen.add(path)
        checked.append((path, size, check_sha256(sha256, path)))
    if not checked:
        raise Invalid("no files: an entry holds at least one file")
    for path in seen:
        parents = PurePosixPath(path).parents
        clash = next((str(p) for p in parents if str(p) in seen), None)
        if clash is not None:
            raise Invalid(f"{clash} is both a file and the directory of {path}")
    return checked


def import_revision(files: Iterable[tuple[str, int, str]]) -> str:
    """An import's revision: the sha256 of its sorted file list (path, size, sha256)."""
    listing = "".join(f"{path}\0{size}\0{sha256}\n" for path, size, sha256 in sorted(files))
    return hashlib.sha256(listing.encode()).hexdigest()
