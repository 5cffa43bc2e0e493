"""The Registry service (`hubctl registry`): list and show entries, import local files, remove
entries. Pulls from Hugging Face (hub/registry/pull_api.py PullApi) and the nodes' caches
(hub/registry/caches_api.py CachesApi) are its mixins, which use the attributes set here.
Entries are rows (hub/store/registry.py); their bytes are in the object store under
ENTRY/REVISION/PATH.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import grpc
from google.protobuf.message import DecodeError

from gpufleet.v1 import registry_pb2 as pb
from gpufleet.v1 import registry_pb2_grpc
from hub.models import catalog
from hub.ops.manager import OperationError, OperationManager
from hub.ops.submit import ERROR_CODES
from hub.registry.caches import NodeCaches
from hub.registry.caches_api import CachesApi
from hub.registry.convert import cache_to_proto, entry_to_proto, file_to_proto
from hub.registry.entries import IMPORT, PULLING, READY, Entry, Invalid
from hub.registry.imports import ACCEPTED, DiskError, ImportRefused, Receiver, header
from hub.registry.pull import Staging, reservation
from hub.registry.pull_api import PullApi
from hub.registry.store import ObjectStore, StoreError
from hub.sessions import SessionRegistry
from hub.store import Store
from hub.store.db import Database
from hub.store.registry import RegistryStore
from hub.work import Work

log = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]
LISTED = "`hubctl registry` lists the entries"
CODES = {
    "invalid": grpc.StatusCode.INVALID_ARGUMENT,
    "truncated": grpc.StatusCode.INVALID_ARGUMENT,
    "mismatch": grpc.StatusCode.DATA_LOSS,
}
SCRATCH = "registry-imports"  # in the state dir: the file an import is receiving


def _utcnow() -> datetime:
    return datetime.now(UTC)


async def refuse(context: Context, status: grpc.StatusCode, message: str) -> NoReturn:
    await context.abort(status, message)
    raise AssertionError("abort raises")


async def _drain(chunks: AsyncIterator[pb.ImportChunk], most: int) -> None:
    """Read and drop what the client still sends after a refusal, at most `most` bytes (the
    import's size): a client cut off while it writes gets a failed write, not the refusal."""
    seen = 0
    with contextlib.suppress(Exception):
        async for chunk in chunks:
            seen += chunk.ByteSize()
            if seen > most:
                return


def _names(names: list[str]) -> str:
    return ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")


class RegistryService(PullApi, CachesApi, registry_pb2_grpc.RegistryServicer):  # type: ignore[misc]
    def __init__(
        self, db: Database, objects: ObjectStore, caches: NodeCaches, sessions: SessionRegistry,
        manager: OperationManager, nodes: Store, models_dir: Path, state_dir: Path,
        work: Work | None = None, clock: Callable[[], datetime] = _utcnow,
    ) -> None:  # fmt: skip
        self.db = db
        self.entries = RegistryStore(db.engine)
        self.objects = objects
        self.caches = caches
        self.sessions = sessions  # the connected agents
        self.manager = manager
        self.nodes = nodes  # the hub's node store
        self.models_dir = models_dir
        self.state_dir = state_dir
        self.work = work  # the models lane (None: a thread)
        self.clock = clock
        self.scratch = state_dir / SCRATCH
        self._importing: set[str] = set()  # entries whose import runs in this hub now
        self._removing: set[str] = set()  # entries a RemoveEntry works on now

    async def prepare(self) -> None:
        """At the hub's start: imports and pulls that a stop interrupted are failed entries (a
        new import of the name replaces them; a pull of it resumes from its staging directory),
        and what imports left in the scratch directory goes."""
        await asyncio.to_thread(self._sweep)
        stopped = "the hub stopped during the import: import it again"
        names = await self.db.call(self.entries.interrupt, IMPORT, stopped)
        if names:
            log.warning("imports interrupted by the hub's stop: %s", ", ".join(names))
        pulls = await self.interrupted_pulls()
        if pulls:
            log.warning("pulls interrupted by the hub's stop (pull again to resume): %s",
                        ", ".join(pulls))  # fmt: skip

    def _sweep(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)
        self.scratch.mkdir(parents=True, exist_ok=True)

    async def _entry(self, name: str, context: Context) -> Entry:
        entry = await self.db.call(self.entries.get, name)
        if entry is None:
            await refuse(context, grpc.StatusCode.NOT_FOUND,
                         f"no registry entry named {name[:64]!r}: {LISTED}")  # fmt: skip
        return entry

    async def _users(self, name: str, context: Context) -> list[str]:
        """The model definitions whose source is the entry (read in the models lane)."""
        if self.models_dir is None:
            return []
        return await self._models(context, catalog.registry_users, self.models_dir, name)

    def _connected(self, node: str) -> bool:
        return self.sessions.get(node) is not None

    async def ListEntries(self, request: pb.ListEntriesRequest,
                          context: Context) -> pb.ListEntriesResponse:  # fmt: skip
        entries = await self.db.call(self.entries.all)
        return pb.ListEntriesResponse(entries=[entry_to_proto(entry) for entry in entries])

    async def GetEntry(self, request: pb.GetEntryRequest,
                       context: Context) -> pb.GetEntryResponse:  # fmt: skip
        entry = await self._entry(request.name, context)
        return pb.GetEntryResponse(
            entry=entry_to_proto(entry), files=[file_to_proto(f) for f in entry.files],
            models=await self._users(entry.name, context),
            caches=[cache_to_proto(node, view, self._connected(node))
                    for node, view in self.caches.holders(entry.name)],
        )  # fmt: skip

    async def RemoveEntry(self, request: pb.RemoveEntryRequest,
                          context: Context) -> pb.RemoveEntryResponse:  # fmt: skip
        entry = await self._entry(request.name, context)
        name = entry.name
        busy = self._busy(name, pulls=False)
        if busy is not None:
            await refuse(context, grpc.StatusCode.FAILED_PRECONDITION,
                         f"entry {name} {busy}: remove it once that ended")  # fmt: skip
        self._removing.add(name)  # no await since the check: an import or pull now is refused
        try:
            return await self._remove(request, context)
        finally:
            self._removing.discard(name)

    async def _remove(self, request: pb.RemoveEntryRequest,
                      context: Context) -> pb.RemoveEntryResponse:  # fmt: skip
        name = request.name
        uses: list[str] = []
        held = self.manager.holder(reservation(name))
        if held is not None:
            operation_id = held[0]
            if not request.force:
                await refuse(context, grpc.StatusCode.FAILED_PRECONDITION,
                             f"entry {name} is being pulled by operation {operation_id}: cancel "
                             f"it first (hubctl ops cancel {operation_id}) or remove the entry "
                             "with --force, which cancels it")  # fmt: skip
            try:
                await self.manager.cancel(operation_id, "registry rm --force")
            except OperationError as exc:
                await refuse(context, ERROR_CODES[exc.kind], f"entry {name} was not removed: "
                             f"{exc}")  # fmt: skip
            uses.append(f"its pull (operation {operation_id}) was cancelled")
        entry = await self._entry(name, context)  # as the pull, if any, left it
        users = await self._users(name, context)
        holders = [node for node, _ in self.caches.holders(name)]
        uses += ([f"models {_names(users)} use it"] if users else []) + (
            [f"nodes {_names(holders)} cache it"] if holders else []
        )
        if (users or holders) and not request.force:
            fix = []
            if users:
                fix.append("change those model definitions' source")
            if holders:
                fix.append("free the caches (hubctl models uncache MODEL --node N)")
            fix.append("or remove it anyway with --force")
            await refuse(context, grpc.StatusCode.FAILED_PRECONDITION,
                         f"entry {name} is in use: {'; '.join(uses)}: "
                         f"{', '.join(fix)}")  # fmt: skip
        try:
            await self.objects.delete_prefix(f"{name}/")
        except StoreError as exc:
            await refuse(context, grpc.StatusCode.UNAVAILABLE, f"cannot remove the files of "
                         f"{name}: {exc}; nothing was removed, try again")  # fmt: skip
        await self.db.call(self.entries.remove, name)
        if self.manager.holder(reservation(name)) is None:  # what a pull kept for a resume
            await asyncio.to_thread(Staging(self.state_dir, name, "").drop)
        log.info("registry entry %s removed (%s)", name, "; ".join(uses) or "unused")
        return pb.RemoveEntryResponse(entry=entry_to_proto(entry), warnings=uses)

    def _busy(self, name: str, pulls: bool = True) -> str | None:
        """What runs on the entry now in this hub (an import, a removal, a pull when `pulls`),
        as the rest of a refusal's line; None when nothing does. No await: a caller that finds
        nothing claims the name before its next await."""
        if name in self._importing:
            return "is being imported"
        if name in self._removing:
            return "is being removed"
        held = self.manager.holder(reservation(name)) if pulls else None
        if held is not None:
            return (
                f"is being pulled by operation {held[0]} (cancel it with "
                f"`hubctl ops cancel {held[0]}`)"
            )
        return None

    async def Import(self, request_iterator: AsyncIterator[pb.ImportChunk],
                     context: Context) -> pb.ImportResponse:  # fmt: skip
        chunks = aiter(request_iterator)
        try:
            first = await anext(chunks)
        except (StopAsyncIteration, DecodeError):
            first = pb.ImportChunk()
        if not first.HasField("start"):
            await refuse(context, grpc.StatusCode.INVALID_ARGUMENT,
                         "an import starts with its header (ImportStart: name, layout, files "
                         "with size and sha256)")  # fmt: skip
        try:
            entry = header(first.start)
        except Invalid as exc:
            await refuse(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        busy = self._busy(entry.name)
        if busy is not None:
            await refuse(context, grpc.StatusCode.FAILED_PRECONDITION,
                         f"entry {entry.name} {busy}: import it once that ended, or import "
                         "into another name")  # fmt: skip
        self._importing.add(entry.name)  # no await since the check
        try:
            await self._may_import(entry, context)
            return await self._import(entry, chunks, context)
        finally:
            self._importing.discard(entry.name)

    async def _may_import(self, entry: Entry, context: Context) -> None:
        """Refused when the name is taken or the store lacks the space; an earlier failed or
        interrupted entry of the name is replaced (its files go now)."""
        name = entry.name
        existing = await self.db.call(self.entries.get, name)
        if existing is not None and existing.state == READY:
            await refuse(context, grpc.StatusCode.ALREADY_EXISTS,
                         f"entry {name} exists ({existing.source}, {len(existing.files)} "
                         f"files): remove it first (hubctl registry rm {name}) or pick another "
                         "name")  # fmt: skip
        if existing is not None and existing.state == PULLING and existing.source != IMPORT:
            await refuse(context, grpc.StatusCode.FAILED_PRECONDITION,
                         f"entry {name} is being pulled from {existing.source}: cancel the pull "
                         "(`hubctl ops`) or pick another name")  # fmt: skip
        largest = max(f.size for f in entry.files)
        try:
            if existing is not None:
                await self.objects.delete_prefix(f"{name}/")
            free = await self.objects.free_bytes()
        except StoreError as exc:
            await refuse(context, grpc.StatusCode.UNAVAILABLE, str(exc))
        if free is not None and free < entry.size + largest:
            await refuse(context, grpc.StatusCode.RESOURCE_EXHAUSTED,
                         f"the registry ({self.objects.describe()}) has {free} bytes free; the "
                         f"import needs {entry.size + largest} (its files plus the largest while "
                         "it is received): free space there first")  # fmt: skip
        try:
            room = (await asyncio.to_thread(shutil.disk_usage, self._scratch_dir())).free
        except OSError as exc:
            await refuse(context, grpc.StatusCode.UNAVAILABLE, f"cannot use the import scratch "
                         f"directory {self.scratch}: {exc.strerror or exc}")  # fmt: skip
        if room < largest:
            await refuse(context, grpc.StatusCode.RESOURCE_EXHAUSTED,
                         f"the import scratch directory {self.scratch} has {room} bytes free; "
                         f"the import needs {largest} there (its largest file while it is "
                         "received): free space there first")  # fmt: skip

    async def _import(self, entry: Entry, chunks: AsyncIterator[pb.ImportChunk],
                      context: Context) -> pb.ImportResponse:  # fmt: skip
        await self.db.call(self.entries.upsert, entry)
        try:
            scratch = Path(await asyncio.to_thread(tempfile.mkdtemp, dir=self._scratch_dir()))
        except OSError as exc:
            await self._forget(entry, None)
            await refuse(context, *space_refusal(exc, f"the import scratch directory "
                                                 f"{self.scratch}"))  # fmt: skip
        receiver = Receiver(entry, self.objects, scratch)
        try:
            await context.send_initial_metadata((ACCEPTED,))
            await receiver.start()
            async for chunk in chunks:
                if not chunk.HasField("data"):
                    raise ImportRefused("invalid", "a second header: an import sends one, then "
                                        "its files' data")  # fmt: skip
                await receiver.feed(chunk.data)
            files = await receiver.finish()
        except (ImportRefused, StoreError, DecodeError, DiskError) as exc:
            receiver.close()
            await asyncio.shield(self._forget(entry, scratch))
            await _drain(chunks, entry.size)
            if isinstance(exc, DiskError):
                await refuse(context, *space_refusal(exc.error, exc.where))
            if isinstance(exc, ImportRefused):
                await refuse(context, CODES[exc.kind], str(exc))
            if isinstance(exc, StoreError):
                await refuse(context, grpc.StatusCode.UNAVAILABLE, f"{exc}; nothing was kept")
            await refuse(context, grpc.StatusCode.INVALID_ARGUMENT, "malformed message")
        except BaseException:  # cancelled (the client went away), or a fault of the hub
            receiver.close()
            await asyncio.shield(self._forget(entry, scratch))
            raise
        await asyncio.to_thread(shutil.rmtree, scratch, True)
        ready = Entry(
            name=entry.name, source=IMPORT, revision=entry.revision, layout=entry.layout,
            repo=entry.repo, files=files, state=READY, pulled=self.clock(),
        )  # fmt: skip
        ready = await self.db.call(self.entries.upsert, ready)
        log.info("registry entry %s imported: %d files, %d bytes", ready.name, len(files),
                 ready.size)  # fmt: skip
        return pb.ImportResponse(entry=entry_to_proto(ready))

    def _scratch_dir(self) -> Path:
        self.scratch.mkdir(parents=True, exist_ok=True)
        return self.scratch

    async def _forget(self, entry: Entry, scratch: Path | None) -> None:
        """Nothing of a refused import is left: its objects (its revision's only), its row
        (while it is this import's), its scratch files."""
        if scratch is not None:
            await asyncio.to_thread(shutil.rmtree, scratch, True)
        try:
            await self.objects.delete_prefix(entry.prefix)
        except StoreError as exc:
            log.warning("the refused import of %s left objects in the registry: %s", entry.name,
                        exc)  # fmt: skip

        def remove() -> None:
            row = self.entries.get(entry.name)
            if row is not None and row.source == IMPORT and row.revision == entry.revision:
                self.entries.remove(entry.name)

        with contextlib.suppress(Exception):
            await self.db.call(remove)


def space_refusal(exc: OSError, where: str) -> tuple[grpc.StatusCode, str]:
    """A write that failed on the hub's disk: RESOURCE_EXHAUSTED when it is full, else
    UNAVAILABLE; one line naming the directory."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"{where} is full ({exc.strerror}): free space there, then import again",
        )
    return grpc.StatusCode.UNAVAILABLE, f"cannot write {where}: {exc.strerror or exc}"
