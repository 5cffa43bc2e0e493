"""Registry entries, their files and the nodes' caches as protobuf: the one place the registry
meets registry.proto (the agents' CachedEntry reports are read in the agent link)."""

from __future__ import annotations

from gpufleet.v1 import registry_pb2 as pb
from hub.convert import timestamp
from hub.registry.caches import CachedView
from hub.registry.entries import Entry, EntryFile


def entry_to_proto(entry: Entry) -> pb.RegistryEntry:
    return pb.RegistryEntry(
        name=entry.name, source=entry.source, revision=entry.revision, files=len(entry.files),
        size=entry.size, pulled=timestamp(entry.pulled), state=entry.state,
        message=entry.message, chunk_size=entry.chunk_size, layout=entry.layout, repo=entry.repo,
    )  # fmt: skip


def file_to_proto(file: EntryFile) -> pb.RegistryFile:
    return pb.RegistryFile(path=file.path, size=file.size, sha256=file.sha256,
                           chunks=list(file.chunks))  # fmt: skip


def cache_to_proto(node: str, view: CachedView, connected: bool) -> pb.NodeCache:
    return pb.NodeCache(
        node=node, entry=view.entry, revision=view.revision, size=view.size,
        verified=view.verified, state=view.state, path=view.path, connected=connected,
    )  # fmt: skip


def import_files(start: pb.ImportStart) -> list[tuple[str, int, str]]:
    """The header's files as (path, size, sha256), unchecked (entries.check_files checks)."""
    return [(f.path, f.size, f.sha256) for f in start.files]
