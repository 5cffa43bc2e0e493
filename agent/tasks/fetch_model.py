"""fetch_model: bring a registry entry into this node's model cache (agent/cache/), with
progress: check (what is there, the disk space), fetch (bytes n/m, percent, rate), verify.
Ok without fetching when the entry is there, verified, at that revision. A cancel keeps the
part files: the next fetch resumes them."""

from __future__ import annotations

import asyncio
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from agent.cache.fetch import CacheResult, Fetcher, FetchError, FileSpec, Moved, hash_file
from agent.cache.index import COMPLETE, FETCHING, PARTIAL, CachedEntry, CachedFile
from agent.cache.layout import (
    HF,
    LAYOUTS,
    Place,
    check_entry,
    check_path,
    check_repo,
    check_revision,
    check_sha256,
)
from agent.cache.layout import (
    PARTIAL as PARTIAL_DIR,
)
from agent.cache.protos import cache_report
from agent.cache.space import SpaceError, check_space, human
from agent.cache.store import ModelCache
from agent.tasks.base import TaskKind
from agent.tasks.context import TaskContext
from agent.tasks.outcome import Outcome, Status, counted
from gpufleet.v1 import agent_link_pb2 as pb

log = logging.getLogger(__name__)
MAX_FILES = 100_000
MIB = 1 << 20


@dataclass(frozen=True)
class FetchSpec:
    entry: str
    revision: str
    layout: str
    repo: str
    chunk_size: int
    files: tuple[FileSpec, ...]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def record(self, root: Path, state: str, verified: bool = False) -> CachedEntry:
        place = self.place(root)
        return CachedEntry(self.entry, self.revision, self.layout, self.repo, state, verified,
                           path=str(place.engine_path),
                           files=tuple(CachedFile(f.path, f.size, f.sha256)
                                       for f in self.files))  # fmt: skip

    def place(self, root: Path) -> Place:
        return Place(root, self.entry, self.revision, self.layout, self.repo)


def parse_file(item: pb.FetchFile, chunk: int) -> FileSpec:
    path = check_path(item.path)
    check_sha256(item.sha256, path)
    chunks = tuple(check_sha256(c, f"{path} chunk") for c in item.chunks)
    if len(chunks) != -(-item.size // chunk):
        raise ValueError(f"{path}: {len(chunks)} chunk hashes for {item.size} bytes in chunks "
                         f"of {chunk}")  # fmt: skip
    if item.url and not item.url.startswith(("http://", "https://")):
        raise ValueError(f"{path}: the URL is not http(s)")
    return FileSpec(path, item.size, item.sha256, chunks, item.url)


def cache_of(ctx: TaskContext, configured: ModelCache | None) -> ModelCache:
    """The agent's cache; without one configured (tests, benchmarks) STATE_DIR/models."""
    return configured or ModelCache(ctx.store.root.parent / "models")


class FetchModel(TaskKind[FetchSpec, CacheResult]):
    kind = "fetch_model"

    def __init__(self, cache: ModelCache | None = None) -> None:
        self.cache = cache

    def parse(self, request: pb.TaskRequest) -> FetchSpec:
        task = request.fetch_model
        if task.layout not in LAYOUTS:
            raise ValueError(f"cache layout {task.layout!r}: expected hf or files")
        if task.chunk_size < MIB or len(task.files) > MAX_FILES:
            raise ValueError("a fetch needs a chunk size of at least 1 MiB and at most "
                             f"{MAX_FILES} files")  # fmt: skip
        files = tuple(parse_file(f, task.chunk_size) for f in task.files)
        if len({f.path for f in files}) != len(files):
            raise ValueError("a file is listed twice")
        repo = check_repo(task.repo) if task.layout == HF else ""
        return FetchSpec(check_entry(task.entry), check_revision(task.revision), task.layout,
                         repo, task.chunk_size, files)  # fmt: skip

    async def run(self, ctx: TaskContext, spec: FetchSpec, check: bool
                  ) -> Outcome[CacheResult]:  # fmt: skip
        cache = cache_of(ctx, self.cache)
        name = f"{spec.entry}@{spec.revision[:12]}"
        ctx.progress("check", f"{name}: {counted(len(spec.files), 'file')}, {human(spec.size)}")
        known = cache.index.read(spec.entry)
        place = spec.place(cache.root)
        if (known is not None and known.revision == spec.revision and known.verified
                and known.state == COMPLETE
                and all(place.present(f.path, f.size, f.sha256) for f in spec.files)):  # fmt: skip
            return Outcome(Status.OK, f"{name} is cached, verified", CacheResult(known))
        if spec.entry in cache.active:
            return Outcome(Status.FAILED, f"{spec.entry} is being fetched by another task: "
                           "wait for it or cancel it", CacheResult(known))  # fmt: skip
        shared = cache.shared_repo(spec.entry, spec.layout, spec.repo, ctx.node_name)
        if shared is not None:
            return Outcome(Status.FAILED, shared, CacheResult(known))
        cache.active.add(spec.entry)  # before the first await: a removal arriving is refused
        try:
            missing = await asyncio.to_thread(_missing, place, spec)
            try:
                check_space(cache.root, missing, cache.reserve, spec.entry)
            except (SpaceError, OSError) as exc:
                return Outcome(Status.FAILED, str(exc), CacheResult(known))
            if check:
                return Outcome(Status.CHANGED, f"would fetch {name}: {human(missing)}",
                               CacheResult(known))  # fmt: skip
            return await self._fetch(ctx, cache, spec, known)
        finally:
            cache.active.discard(spec.entry)

    async def _fetch(self, ctx: TaskContext, cache: ModelCache, spec: FetchSpec,
                     known: CachedEntry | None) -> Outcome[CacheResult]:  # fmt: skip
        name = f"{spec.entry}@{spec.revision[:12]}"
        record = cache.index.write(spec.record(cache.root, FETCHING).with_(
            size=known.size if known is not None else 0))  # fmt: skip
        moved = Moved()
        place = spec.place(cache.root)
        finished = 0  # bytes of the files done
        at = (0, 0)  # moved.fetched, moved.resumed when the current file began

        def tick() -> None:
            current = moved.fetched - at[0] + moved.resumed - at[1]
            have = min(finished + current, spec.size)
            percent = 100.0 * have / spec.size if spec.size else 100.0
            ctx.progress("fetch", f"{human(have)}/{human(spec.size)} ({percent:.0f}%), "
                         f"{moved.rate() / MIB:.1f} MiB/s", percent)  # fmt: skip

        try:
            for item in spec.files:
                at = (moved.fetched, moved.resumed)
                if await asyncio.to_thread(_verified_in_place, place, item):
                    moved.resumed += item.size
                else:
                    await Fetcher(place, cache.sources, spec.chunk_size, moved, tick).fetch(item)
                finished += item.size
                tick()
            ctx.progress("verify", f"{name}: {counted(len(spec.files), 'file')} verified", 100.0)
            await asyncio.to_thread(place.write_ref)
            await asyncio.to_thread(_drop_stale, cache, known, spec)
        except (FetchError, OSError) as exc:
            failed = record.with_(state=PARTIAL, size=cache.entry_size(record))
            cache.index.write(failed)
            message = exc if isinstance(exc, FetchError) else f"{exc.strerror}: {exc.filename}"
            return Outcome(Status.FAILED, f"{name}: {message}", CacheResult(failed, moved))
        except asyncio.CancelledError:
            cache.index.write(record.with_(state=PARTIAL, size=cache.entry_size(record)))
            raise
        final = cache.index.write(record.with_(state=COMPLETE, verified=True,
                                               size=cache.entry_size(record)))  # fmt: skip
        rate = moved.rate() / MIB
        message = (f"fetched {name}: {counted(len(spec.files), 'file')}, "
                   f"{human(moved.fetched)} at {rate:.1f} MiB/s, {human(moved.resumed)} "
                   f"resumed, {counted(moved.refetched, 'chunk')} fetched again")  # fmt: skip
        return Outcome(Status.CHANGED, message, CacheResult(final, moved))

    def fill(self, result: pb.TaskResult, data: CacheResult) -> None:
        result.cache.CopyFrom(cache_report(data))

    async def cancelled(self, ctx: TaskContext, spec: FetchSpec) -> CacheResult | None:
        return CacheResult(cache_of(ctx, self.cache).index.read(spec.entry))


def _verified_in_place(place: Place, item: FileSpec) -> bool:
    """A file whose bytes are already in place (an earlier fetch, or an hf blob another
    revision shares): hashed, and linked where engines open it; a bad one is deleted."""
    if not place.has_bytes(item.path, item.size, item.sha256):
        return False
    path = place.final(item.path, item.sha256)
    if hash_file(path) != item.sha256:
        log.warning("model cache %s: %s did not verify: fetching it again", place.entry,
                    item.path)  # fmt: skip
        path.unlink()
        return False
    place.link(item.path, item.sha256)
    return True


def _missing(place: Place, spec: FetchSpec) -> int:
    """Bytes still to come: the files not in place, less what their part files hold."""
    missing = 0
    for item in spec.files:
        if place.has_bytes(item.path, item.size, item.sha256):
            continue
        try:
            have = min(place.part(item.path).stat().st_size, item.size)
        except OSError:
            have = 0
        missing += item.size - have
    return missing


def _drop_stale(cache: ModelCache, known: CachedEntry | None, spec: FetchSpec) -> None:
    """Part files left (of this or an earlier revision), and files of an earlier revision of
    a files-layout entry that the new one lacks."""
    shutil.rmtree(cache.root / PARTIAL_DIR / spec.entry, ignore_errors=True)
    if known is not None:
        cache.drop_replaced(known, spec.record(cache.root, COMPLETE))
    if known is None or known.layout != spec.layout or known.layout == HF:
        return
    keep = {f.path for f in spec.files}
    place = spec.place(cache.root)
    for item in known.files:
        if item.path not in keep:
            place.visible(item.path).unlink(missing_ok=True)
