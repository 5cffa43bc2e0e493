"""hubctl registry import: local files into the registry. The files are listed and hashed
here first (a progress line on stderr), then streamed to the hub as one Import call: a
header naming every file with its size and sha256, then each file's bytes in 1 MiB messages.

Loaded only by the import command (it imports the stubs).
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.output import CliError
from cli.registry_view import size
from gpufleet.v1 import registry_pb2

if TYPE_CHECKING:
    from cli.client import HubClient

MESSAGE_BYTES = 1 << 20  # ImportData.data: at most 1 MiB per message
SKIPPED = (".cache/huggingface",)  # what `hf download --local-dir` leaves beside the files


@dataclass(frozen=True)
class LocalFile:
    path: str  # relative to the entry, '/'-separated
    local: Path
    size: int
    sha256: str = ""


def unreadable(path: Path, exc: OSError) -> CliError:
    return CliError(f"cannot read {path}: {exc.strerror or exc}", exit_code=2)


def listing(root: Path) -> list[LocalFile]:
    """PATH as the files to import: a file alone (its name), or every file below a directory
    (symbolic links to files followed, as in a Hugging Face cache snapshot), sorted."""
    try:
        if root.is_file():
            return [LocalFile(root.name, root, root.stat().st_size)]
        if not root.is_dir():
            raise CliError(f"{root}: no such file or directory", exit_code=2)
        found = []
        for folder, dirs, names in os.walk(root, followlinks=False, onerror=_raise):
            dirs.sort()
            for name in sorted(names):
                local = Path(folder) / name
                relative = local.relative_to(root).as_posix()
                if relative.startswith(SKIPPED) or not local.is_file():
                    continue
                found.append(LocalFile(relative, local, local.stat().st_size))
    except OSError as exc:
        raise unreadable(Path(exc.filename or root), exc) from None
    if not found:
        raise CliError(f"{root}: no file to import in this directory", exit_code=2)
    return found


def _raise(exc: OSError) -> None:
    raise exc


class Progress:
    """One line on stderr, rewritten in place on a terminal; elsewhere only the last state."""

    def __init__(self, verb: str, files: list[LocalFile]) -> None:
        self.verb, self.count = verb, len(files)
        self.total = sum(f.size for f in files)
        self.done, self.index = 0, 0
        self.started = self.shown = time.monotonic()
        self.tty = sys.stderr.isatty()

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = self.done / elapsed / 1e6
        return (f"{self.verb} {self.index}/{self.count} files, {size(self.done)} of "
                f"{size(self.total)}, {rate:.0f} MB/s")  # fmt: skip

    def add(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if self.tty and now - self.shown >= 0.2:
            self.shown = now
            sys.stderr.write(f"\r{self.line()}\x1b[K")
            sys.stderr.flush()

    def end(self) -> None:
        prefix, suffix = ("\r", "\x1b[K") if self.tty else ("", "")
        sys.stderr.write(f"{prefix}{self.line()}{suffix}\n")
        sys.stderr.flush()


def hashed(files: list[LocalFile]) -> list[LocalFile]:
    """Each file with its sha256, read here before anything is sent."""
    progress = Progress("hashed", files)
    found = []
    for item in files:
        progress.index += 1
        digest = hashlib.sha256()
        try:
            with item.local.open("rb") as handle:
                while block := handle.read(MESSAGE_BYTES):
                    digest.update(block)
                    progress.add(len(block))
        except OSError as exc:
            raise unreadable(item.local, exc) from None
        found.append(LocalFile(item.path, item.local, item.size, digest.hexdigest()))
    progress.end()
    return found


class Stream:
    """The Import call's messages; a file that changed or vanished since it was hashed ends
    the stream early and is said here, not as the hub's word on a short upload."""

    def __init__(self, start: registry_pb2.ImportStart, files: list[LocalFile]) -> None:
        self.start, self.files = start, files
        self.problem = ""
        self.progress = Progress("sent", files)

    def __iter__(self) -> Iterator[registry_pb2.ImportChunk]:
        yield registry_pb2.ImportChunk(start=self.start)
        for item in self.files:
            self.progress.index += 1
            sent = 0
            try:
                with item.local.open("rb") as handle:
                    while sent < item.size and (block := handle.read(MESSAGE_BYTES)):
                        block = block[: item.size - sent]
                        sent += len(block)
                        self.progress.add(len(block))
                        yield registry_pb2.ImportChunk(
                            data=registry_pb2.ImportData(path=item.path, data=block)
                        )
            except OSError as exc:
                self.problem = str(unreadable(item.local, exc))
                return
            if sent != item.size:
                self.problem = f"{item.local} shrank while it was sent: import it again"
                return
        self.progress.end()


def upload(
    hub: HubClient, stub: Any, name: str, layout: str, repo: str, files: list[LocalFile]
) -> registry_pb2.ImportResponse:
    """One Import call (no deadline: a model is gigabytes); the hub's refusal as one line."""
    import grpc

    infos = [registry_pb2.ImportFileInfo(path=f.path, size=f.size, sha256=f.sha256)
             for f in files]  # fmt: skip
    stream = Stream(registry_pb2.ImportStart(name=name, layout=layout, repo=repo, files=infos),
                    files)  # fmt: skip
    try:
        reply: registry_pb2.ImportResponse = stub.Import(iter(stream))
    except grpc.RpcError as error:
        if stream.problem:
            raise CliError(stream.problem, exit_code=2) from None
        raise hub.error(error) from None
    if stream.problem:
        raise CliError(stream.problem, exit_code=2)
    return reply
