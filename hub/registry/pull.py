"""A pull from Hugging Face into the registry (`hubctl registry pull`): an operation of kind
registry-pull that runs on the hub itself, holding the entry's name.

The revision is resolved to its commit and the commit's files listed (hub/registry/hf.py);
each file comes into STATE_DIR/registry-staging/ENTRY/COMMIT/PATH.part by ranged GETs from
what is already there (a pull interrupted by a cut, a cancel or a hub restart fetches only the
missing bytes; the kept bytes are hashed again, not fetched), is checked against the sha256 the
Hub lists (the git blob id for files outside LFS), then put into the object store under
ENTRY/COMMIT/PATH. What is in the store is noted in STATE_DIR/registry-staging/ENTRY/COMMIT.json,
so a resumed pull skips it. Once every file is in, the entry is ready: layout hf, repo
ORG/NAME, source hf:ORG/NAME, revision the commit. Progress: files n/m, bytes, rate, ETA.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import shutil
from collections.abc import Callable, Coroutine, Sized
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.ops.batches import Outcome
from hub.ops.kind import HubKind, HubRun
from hub.registry import hf
from hub.registry.entries import (
    FAILED,
    MAX_FILE_SIZE,
    MAX_FILES,
    PULLING,
    READY,
    Entry,
    EntryFile,
    Invalid,
    check_path,
)
from hub.registry.store import ObjectStore, StoreError
from hub.store.db import Database
from hub.store.registry import RegistryStore

if TYPE_CHECKING:
    import httpx2 as httpx  # loaded by hf.client() at the first pull

log = logging.getLogger(__name__)
KIND = "registry-pull"
STAGING = "registry-staging"
PROGRESS_EVERY_S = 1.0
PARALLEL = 4  # files downloaded at once
STOPPED = "the hub stopped during the pull: pull again to resume"
MB = 1_000_000


def reservation(name: str) -> str:
    """What a pull (and anything else that must not run beside it) holds for an entry."""
    return f"registry entry {name}"


def source_of(repo: str) -> str:
    return f"hf:{repo}"


def amount(size: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size:.0f} B"


def count(files: Sized) -> str:
    return f"{len(files)} file{'' if len(files) == 1 else 's'}"


@dataclass(frozen=True)
class PullSpec:
    name: str
    repo: str  # ORG/NAME
    revision: str  # branch, tag or commit; "" for main
    include: tuple[str, ...] = ()

    @property
    def source(self) -> str:
        return source_of(self.repo)


@dataclass
class Registry:
    """What a pull needs of the hub."""

    db: Database
    entries: RegistryStore
    objects: ObjectStore
    state_dir: Path
    clock: Callable[[], datetime]
    hf: hf.HfConfig | None = None  # None: HF_ENDPOINT and HF_TOKEN of the environment now


class Meter:
    """Files n/m, bytes, rate and ETA of a pull, as one progress line."""

    def __init__(self, files: int, total: int, done_files: int, done: int) -> None:
        self.files, self.total = files, total
        self.done_files, self.done = done_files, done
        self.fetched = 0  # bytes from the network in this pull
        self.started = asyncio.get_running_loop().time()

    def add(self, count: int, fetched: bool = True) -> None:
        self.done += count
        self.fetched += count if fetched else 0

    def line(self) -> tuple[str, float | None]:
        took = asyncio.get_running_loop().time() - self.started
        rate = self.fetched / took if took > 0 else 0.0
        left = self.total - self.done
        eta = f", ETA {left / rate:.0f} s" if rate > 0 and left > 0 else ""
        text = (f"files {self.done_files}/{self.files}, {amount(self.done)} of "
                f"{amount(self.total)}, {rate / MB:.1f} MB/s{eta}")  # fmt: skip
        return text, 100.0 * self.done / self.total if self.total else None


class Staging:
    """STATE_DIR/registry-staging/ENTRY/COMMIT/: part files, and COMMIT.json of the files
    already in the store (path -> size, sha256, chunks)."""

    def __init__(self, state_dir: Path, name: str, commit: str) -> None:
        self.entry_dir = state_dir / STAGING / name
        self.dir = self.entry_dir / commit
        self.notes = self.entry_dir / f"{commit}.json"
        self.commit = commit

    def part(self, path: str) -> Path:
        return self.dir.joinpath(*path.split("/")).with_name(path.split("/")[-1] + ".part")

    def stored(self) -> dict[str, EntryFile]:
        """Lefts of earlier pulls of other commits go; what this commit has in the store."""
        if self.entry_dir.is_dir():
            for other in self.entry_dir.iterdir():
                if other.name not in (self.commit, self.notes.name):
                    shutil.rmtree(other) if other.is_dir() else other.unlink()
        try:
            rows = json.loads(self.notes.read_text())
            return {path: EntryFile(path, int(r["size"]), str(r["sha256"]), tuple(r["chunks"]))
                    for path, r in rows.items()}  # fmt: skip
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return {}

    def note(self, files: dict[str, EntryFile]) -> None:
        self.entry_dir.mkdir(parents=True, exist_ok=True)
        rows = {f.path: {"size": f.size, "sha256": f.sha256, "chunks": list(f.chunks)}
                for f in files.values()}  # fmt: skip
        scratch = self.notes.with_suffix(".tmp")
        scratch.write_text(json.dumps(rows))
        os.replace(scratch, self.notes)

    def kept(self) -> int:
        """Bytes of part files kept for a resume."""
        if not self.dir.is_dir():
            return 0
        return sum(p.stat().st_size for p in self.dir.rglob("*.part") if p.is_file())

    def drop(self) -> None:
        shutil.rmtree(self.entry_dir, ignore_errors=True)


class PullKind(HubKind):
    name = KIND

    def __init__(self, spec: PullSpec, registry: Registry) -> None:
        self.spec = spec
        self.registry = registry

    @property
    def reservation(self) -> str:
        return reservation(self.spec.name)

    @property
    def configuration(self) -> str:
        return self.spec.name

    async def run_hub(self, run: HubRun) -> Outcome:
        pull = Pull(self.spec, self.registry, run)
        work = asyncio.ensure_future(pull.run())
        stop = asyncio.ensure_future(run.cancel.wait())
        try:
            await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # the hub stops
            await _ended(work, stop)
            await pull.failed(STOPPED)
            raise
        await _ended(work, stop)
        if not work.cancelled() and work.exception() is None:
            return work.result()
        error = None if work.cancelled() else work.exception()
        if error is not None and not isinstance(error, asyncio.CancelledError):
            raise error
        kept = await asyncio.to_thread(pull.staging.kept) if pull.staging else 0
        message = f"{amount(kept)} kept for a resume: pull again to go on"
        await pull.failed("cancelled")
        return Outcome("cancelled", message)


async def _ended(*tasks: asyncio.Future[Any]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class Pull:
    def __init__(self, spec: PullSpec, registry: Registry, run: HubRun) -> None:
        self.spec, self.registry, self.run_ = spec, registry, run
        self.repo = hf.HfRepo(registry.hf or hf.HfConfig.from_env(), spec.repo)
        self.staging: Staging | None = None
        self.before: Entry | None = None  # the entry as the pull found it

    async def run(self) -> Outcome:
        try:
            return await self._pull()
        except hf.Damaged as exc:
            message = f"{exc}: the download was refused and removed"
            await self.failed(message)
            return Outcome("failed", message)
        except (hf.HfError, StoreError, Invalid) as exc:
            await self.failed(str(exc))
            return Outcome("failed", str(exc))
        except OSError as exc:
            where = self.registry.state_dir / STAGING
            message = f"cannot write the staging directory {where}: {exc.strerror or exc}"
            await self.failed(message)
            return Outcome("failed", message)

    async def _entry(self, entry: Entry) -> Entry:
        return await self.registry.db.call(self.registry.entries.upsert, entry)

    def _mine(self, row: Entry | None) -> bool:
        """The row is still the one this pull wrote (or found ready): not removed meanwhile,
        not replaced by an import or another pull."""
        if row is None or row.source != self.spec.source:
            return False
        before = self.before
        if before is not None and before.ready:
            return row.ready and row.revision == before.revision
        return row.state == PULLING and row.message == self._doing

    @property
    def _doing(self) -> str:
        return f"pulling: operation {self.run_.operation_id}"

    async def _settle(self, entry: Entry | None, message: str = "") -> Entry | None:
        """Compare and set: the final row (`entry`, or failed with `message` when None) is
        written only while the row is this pull's; None when it is not (left as it is)."""
        store = self.registry.entries

        def settle() -> Entry | None:
            if not self._mine(store.get(self.spec.name)):
                return None
            if entry is None:
                return store.set_state(self.spec.name, FAILED, message)
            return store.upsert(entry)

        return await self.registry.db.call(settle)

    async def failed(self, message: str) -> None:
        """The entry says why, unless it was ready before (it stays so, from before) or is no
        longer this pull's (removed meanwhile)."""
        if self.before is not None and self.before.ready:
            return
        await self._settle(None, message)

    async def _pull(self) -> Outcome:
        spec, reg, run = self.spec, self.registry, self.run_
        self.before = before = await reg.db.call(reg.entries.get, spec.name)
        if before is not None and not before.ready and before.source != spec.source:
            # A failed or interrupted entry of another source: nothing of it is kept.
            await reg.objects.delete_prefix(f"{spec.name}/")
            await asyncio.to_thread(Staging(reg.state_dir, spec.name, "").drop)
            self.before = before = None
        await self._pulling(before.revision if before else "")
        wanted = spec.revision or "main"
        commit = await self.repo.resolve(wanted)
        run.report("resolve", f"{spec.repo} {wanted} is commit {commit}")
        await self._pulling(commit)
        files = checked(await self.repo.files(commit, spec.include), spec)
        if (
            self.before is not None
            and self.before.ready
            and self.before.revision == commit
            and ([f.path for f in self.before.files] == [f.path for f in files])
        ):
            return Outcome("ok", f"{spec.name} already holds commit {commit[:12]} "
                           f"({count(files)}, {amount(self.before.size)})")  # fmt: skip
        self.staging = staging = Staging(reg.state_dir, spec.name, commit)
        done = await self._in_store(files, await asyncio.to_thread(staging.stored), commit)
        meter = Meter(len(files), sum(f.size for f in files), len(done),
                      sum(f.size for f in done.values()))  # fmt: skip
        todo = [f for f in files if f.path not in done]
        run.report("files", f"{count(files)}, {amount(meter.total)}: {len(done)} in the "
                   f"registry already, {len(todo)} to fetch")  # fmt: skip
        await self._room(todo, staging)
        noting = asyncio.Lock()

        async def fetch(http: httpx.AsyncClient) -> None:
            while todo:
                file = todo.pop(0)
                done[file.path] = await self._one(http, commit, file, meter)
                meter.done_files += 1
                async with noting:
                    await asyncio.to_thread(staging.note, dict(done))
                run.progress("download", *meter.line())

        ticker = asyncio.create_task(self._tick(meter))
        try:
            async with hf.client() as http:
                await first_error([fetch(http) for _ in range(min(PARALLEL, len(todo)))])
        finally:
            ticker.cancel()
        return await self._ready(commit, [done[f.path] for f in files], meter)

    async def _pulling(self, revision: str) -> None:
        """The entry says a pull runs (from this commit, once known): unless it is ready, when
        it stays as it was until the pull is done."""
        if self.before is not None and self.before.ready:
            return
        spec = self.spec
        await self._entry(Entry(spec.name, spec.source, revision, layout="hf", repo=spec.repo,
                                state=PULLING, message=self._doing))  # fmt: skip

    async def _tick(self, meter: Meter) -> None:
        while True:
            await asyncio.sleep(PROGRESS_EVERY_S)
            self.run_.progress("download", *meter.line())

    async def _in_store(self, files: list[hf.RemoteFile], noted: dict[str, EntryFile],
                        commit: str) -> dict[str, EntryFile]:  # fmt: skip
        """The files already in the store under ENTRY/COMMIT: noted by an earlier pull of this
        commit, or in the ready entry of this commit, with the size the Hub lists."""
        known = dict(noted)
        if self.before is not None and self.before.ready and self.before.revision == commit:
            known.update({f.path: f for f in self.before.files})
        done: dict[str, EntryFile] = {}
        for file in files:
            have = known.get(file.path)
            if have is None or have.size != file.size or file.sha256 not in (None, have.sha256):
                continue
            key = f"{self.spec.name}/{commit}/{file.path}"
            if await self.registry.objects.size(key) == file.size:
                done[file.path] = have
        return done

    async def _room(self, todo: list[hf.RemoteFile], staging: Staging) -> None:
        """Refused up front when the staging directory or the store lacks the space."""
        need = sum(f.size for f in todo)
        if not need:
            return
        await asyncio.to_thread(staging.dir.mkdir, parents=True, exist_ok=True)
        kept = await asyncio.to_thread(staging.kept)
        free = (await asyncio.to_thread(shutil.disk_usage, staging.dir)).free
        largest = max(f.size for f in todo)
        if await asyncio.to_thread(self._same_disk, staging):
            # Staging and the local store share a filesystem: the files end there, and up to
            # PARALLEL of them are staged and stored at once.
            more = need + PARALLEL * largest
            if free + kept < more:
                raise hf.HfError(f"the staging directory {staging.dir.parent.parent} and the "
                                 f"registry ({self.registry.objects.describe()}) share a disk "
                                 f"with {amount(free)} free; the pull needs {amount(more - kept)}"
                                 f" (its files, and {PARALLEL} of the largest in flight): free "
                                 "space there first")  # fmt: skip
            return
        if free + kept < need:
            raise hf.HfError(f"the staging directory {staging.dir.parent.parent} has "
                             f"{amount(free)} free; the pull needs {amount(need - kept)} more: "
                             "free space there first")  # fmt: skip
        room = await self.registry.objects.free_bytes()
        if room is not None and room < need:
            raise hf.HfError(f"the registry ({self.registry.objects.describe()}) has "
                             f"{amount(room)} free; the pull needs {amount(need)}: free space "
                             "there first")  # fmt: skip

    def _same_disk(self, staging: Staging) -> bool:
        root = getattr(self.registry.objects, "root", None)  # the local store's directory
        if self.registry.objects.kind != "local" or not isinstance(root, Path):
            return False
        try:
            return os.stat(root).st_dev == os.stat(staging.dir).st_dev
        except OSError:
            return False

    async def _one(self, http: httpx.AsyncClient, commit: str, file: hf.RemoteFile,
                   meter: Meter) -> EntryFile:  # fmt: skip
        assert self.staging is not None
        part = self.staging.part(file.path)
        kept = await asyncio.to_thread(lambda: part.stat().st_size if part.exists() else 0)
        start = meter.done
        meter.add(min(kept, file.size), fetched=False)
        if kept:
            self.run_.report("resume", f"{file.path}: {amount(kept)} kept from before, hashed "
                             "again, the rest fetched")  # fmt: skip
        try:
            got = await hf.download(self.repo, http, commit, file, part, meter.add)
        except hf.Damaged:
            await asyncio.to_thread(part.unlink, True)
            if not kept:
                raise
            # What an earlier pull left may be what is damaged: once more from the start.
            self.run_.report("refetch", f"{file.path}: damaged after a resume, fetching anew")
            meter.done = start
            got = await hf.download(self.repo, http, commit, file, part, meter.add)
        key = f"{self.spec.name}/{commit}/{file.path}"
        try:
            await self.registry.objects.put_file(key, part)
        except OSError as exc:  # the local store's disk, not the staging directory
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
            raise StoreError(
                f"cannot write {key} into the registry "
                f"({self.registry.objects.describe()}): {exc.strerror or exc}: "
                + ("free space there first" if full else "check that directory")
            ) from None
        await asyncio.to_thread(part.unlink, True)
        return got

    async def _ready(self, commit: str, files: list[EntryFile], meter: Meter) -> Outcome:
        spec, reg = self.spec, self.registry
        entry = await self._settle(Entry(
            spec.name, spec.source, commit, layout="hf", repo=spec.repo, files=tuple(files),
            state=READY, pulled=reg.clock(),
        ))  # fmt: skip
        if entry is None:  # removed (or replaced) while it was pulled: its files go too
            with contextlib.suppress(StoreError):
                await reg.objects.delete_prefix(f"{spec.name}/{commit}/")
            if self.staging is not None:
                await asyncio.to_thread(self.staging.drop)
            return Outcome("failed", f"{spec.name} was removed during the pull: nothing kept")
        before = self.before
        if before is not None and before.revision and before.revision != commit:
            try:  # the files of the revision it held before
                await reg.objects.delete_prefix(before.prefix)
            except StoreError as exc:
                log.warning("the files of %s at %s stay in the registry: %s", spec.name,
                            before.revision, exc)  # fmt: skip
        if self.staging is not None:
            await asyncio.to_thread(self.staging.drop)
        text, _ = meter.line()
        log.info("registry entry %s pulled from %s at %s: %s", spec.name, spec.repo, commit, text)
        return Outcome("changed", f"{spec.name}: {count(files)}, {amount(entry.size)} at "
                       f"commit {commit[:12]} ({amount(meter.fetched)} fetched)")  # fmt: skip


async def first_error(jobs: list[Coroutine[Any, Any, None]]) -> None:
    """Run the jobs together; the first to fail cancels the others and its error is raised."""
    tasks = [asyncio.ensure_future(job) for job in jobs]
    if not tasks:
        return
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    errors = [error for task in tasks if not task.cancelled()
              and (error := task.exception()) is not None]  # fmt: skip
    if errors:
        raise errors[0]


def checked(files: list[hf.RemoteFile], spec: PullSpec) -> list[hf.RemoteFile]:
    """The Hub's file list as an entry may hold it; HfError (one line) when it may not."""
    if not files:
        which = f" matches --include {' '.join(spec.include)}" if spec.include else ""
        raise hf.HfError(f"no file of {spec.repo}{which}: check the repository and the patterns")
    if len(files) > MAX_FILES:
        raise hf.HfError(f"{spec.repo} has {len(files)} files; an entry holds at most "
                         f"{MAX_FILES}: narrow it with --include")  # fmt: skip
    for file in files:
        check_path(file.path)
        if file.size > MAX_FILE_SIZE:
            raise hf.HfError(f"{file.path}: {amount(file.size)}; a file in the registry is at "
                             "most 1 TiB")  # fmt: skip
    return files
