"""Cache entries <-> protobuf, one place per type (CachedEntry, CachesReport, CacheReport)."""

from __future__ import annotations

from collections.abc import Sequence

from agent.cache.fetch import CacheResult
from agent.cache.index import CachedEntry
from gpufleet.v1 import agent_link_pb2 as pb


def entry_to_proto(record: CachedEntry) -> pb.CachedEntry:
    return pb.CachedEntry(entry=record.entry, revision=record.revision, size=record.size,
                          verified=record.verified, state=record.state, path=record.path,
                          layout=record.layout, repo=record.repo)  # fmt: skip


def caches_report(records: Sequence[CachedEntry]) -> pb.CachesReport:
    return pb.CachesReport(caches=[entry_to_proto(r) for r in records])


def cache_report(result: CacheResult) -> pb.CacheReport:
    """A record of None: the entry is gone (state "")."""
    record, moved = result.record, result.moved
    found = pb.CacheReport()
    if record is not None:
        found.entry.CopyFrom(entry_to_proto(record))
    if moved is not None:
        found.fetched_bytes = moved.fetched
        found.resumed_bytes = moved.resumed
        found.refetched_chunks = moved.refetched
    return found
