"""The Registry service's own RPCs (list, show, import, remove) and RegistryFetch.Download,
over gRPC (a grpc.aio server behind the hub's interceptor) on a real database, with the
embedded store and with S3 (moto's server process)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest

from gpufleet.v1 import registry_pb2 as pb
from gpufleet.v1 import registry_pb2_grpc
from hub.ops.manager import OperationManager
from hub.registry.caches import CachedView, NodeCaches
from hub.registry.entries import (
    CHUNK_SIZE,
    MAX_FILES,
    Entry,
    EntryFile,
    Invalid,
    import_revision,
)
from hub.registry.fetch_service import RegistryFetchService
from hub.registry.imports import ACCEPTED, header
from hub.registry.local import LocalStore
from hub.registry.service import SCRATCH, RegistryService
from hub.registry.store import READ_PIECE, ObjectStore, open_store
from hub.sessions import SessionRegistry
from hub.store import Database, Store
from hub.store.operations import OperationStore
from hub.store.registry import RegistryStore
from hub.trust.auth import AuthInterceptor
from hub.trust.callers import Authenticator
from tests.support.procs import Cluster
from tests.support.s3server import S3Server, start_or_skip

T0 = datetime(2026, 12, 1, 0, 30, tzinfo=UTC)
MiB = 1024 * 1024
BIG = os.urandom(CHUNK_SIZE + 3 * MiB + 17)  # two chunks, the last short
FILES = {"model.gguf": BIG, "sub/config.json": b'{"a": 1}', "empty.txt": b""}
MODELS = {  # definitions whose source is the entry "tiny"
    "chat.yaml": "name: chat\nengine: vllm\nsource:\n  registry: tiny\n",
    "small.yaml": "name: small\nengine: llama-cpp\nsource:\n  registry: tiny\n  file: model.gguf\n",
    "unrelated.yaml": "name: unrelated\nengine: vllm\nsource:\n  hf:\n    repo: org/x\n",
}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    server = start_or_skip()
    yield server
    server.stop()


@pytest.fixture
def local(tmp_path: Path) -> ObjectStore:
    return open_store(None, tmp_path / "state")


@dataclass
class Hub:
    registry: Any  # RegistryStub
    fetch: Any  # RegistryFetchStub
    service: RegistryService
    objects: ObjectStore


@contextlib.asynccontextmanager
async def served(db: Database, objects: ObjectStore, tmp_path: Path,
                 caches: NodeCaches | None = None, sessions: SessionRegistry | None = None,
                 max_message: int = 4 * MiB) -> AsyncIterator[Hub]:  # fmt: skip
    """Both services behind the hub's interceptor (insecure: the caller is an admin)."""
    await objects.prepare()
    models = tmp_path / "models"
    models.mkdir(exist_ok=True)
    for name, text in MODELS.items():
        (models / name).write_text(text)
    sessions = sessions or SessionRegistry()
    manager = OperationManager(sessions, db, OperationStore(db.engine))
    service = RegistryService(
        db, objects, caches or NodeCaches(), sessions, manager, Store(db.engine), models,
        tmp_path / "state", clock=lambda: T0,
    )  # fmt: skip
    await service.prepare()
    audit: list[object] = []
    interceptor = AuthInterceptor(Authenticator(True, lambda: datetime.now(UTC)), audit.append)
    options = [("grpc.max_receive_message_length", max_message)]
    server = grpc.aio.server(interceptors=[interceptor], options=options)
    registry_pb2_grpc.add_RegistryServicer_to_server(service, server)  # type: ignore[no-untyped-call]
    registry_pb2_grpc.add_RegistryFetchServicer_to_server(  # type: ignore[no-untyped-call]
        RegistryFetchService(db, objects), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(
            f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", max_message)]
        ) as channel:
            yield Hub(registry_pb2_grpc.RegistryStub(channel),  # type: ignore[no-untyped-call]
                      registry_pb2_grpc.RegistryFetchStub(channel),  # type: ignore[no-untyped-call]
                      service, objects)  # fmt: skip
    finally:
        await server.stop(0)
        await manager.shutdown()


def start(name: str, files: dict[str, bytes], **overrides: str) -> pb.ImportChunk:
    infos = [pb.ImportFileInfo(path=path, size=len(data), sha256=overrides.get(path, sha(data)))
             for path, data in files.items()]  # fmt: skip
    return pb.ImportChunk(start=pb.ImportStart(name=name, files=infos))


def data(files: dict[str, bytes], piece: int = MiB) -> Iterator[pb.ImportChunk]:
    for path, content in files.items():
        for at in range(0, len(content), piece):
            yield pb.ImportChunk(data=pb.ImportData(path=path, data=content[at : at + piece]))


def stream(*parts: pb.ImportChunk | Iterator[pb.ImportChunk]) -> Iterator[pb.ImportChunk]:
    for part in parts:
        if isinstance(part, pb.ImportChunk):
            yield part
        else:
            yield from part


async def imported(hub: Hub, messages: Iterator[pb.ImportChunk]) -> pb.ImportResponse:
    """Import as a client should: the header, then the data once the hub accepted the header
    (its initial metadata says so); a refusal is the call's status, even one that came while
    the client was still writing."""
    call = hub.registry.Import()
    try:
        await call.write(next(messages))
        if ACCEPTED in tuple(await call.initial_metadata()):
            for message in messages:
                await call.write(message)
        await call.done_writing()
    except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
        pass  # refused: `await call` raises the hub's status
    response: pb.ImportResponse = await call
    return response


async def refused(call: Any) -> grpc.aio.AioRpcError:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc
    raise AssertionError("the call succeeded")


async def download(hub: Hub, **request: Any) -> list[bytes]:
    return [chunk.data async for chunk in hub.fetch.Download(pb.DownloadRequest(**request))]


async def leftovers(hub: Hub, tmp_path: Path) -> list[str]:
    """What the store and the scratch directory hold of entry "tiny"."""
    found = [str(p.relative_to(tmp_path)) for p in (tmp_path / "state" / SCRATCH).rglob("*")]
    for path in ["model.gguf", "sub/config.json", "empty.txt"]:
        for revision in [import_revision((p, len(d), sha(d)) for p, d in FILES.items())]:
            if await hub.objects.size(f"tiny/{revision}/{path}") is not None:
                found.append(path)
    if isinstance(hub.objects, LocalStore) and (hub.objects.root / "tiny").exists():
        found.append("tiny/")
    return found


def cached(entry: str, state: str = "complete") -> CachedView:
    return CachedView(entry, "rev", 123, state == "complete", state, f"/cache/files/{entry}")


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_import_list_show_and_download(kind: str, db: Database, tmp_path: Path,
                                       request: pytest.FixtureRequest,
                                       monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    if kind == "s3":
        server: S3Server = request.getfixturevalue("s3_server")
        server.apply(monkeypatch)
        bucket = server.fresh_bucket()
        objects = open_store(f"s3://{bucket}/models", tmp_path / "state")
    else:
        objects = open_store(None, tmp_path / "state")
    caches = NodeCaches()
    caches.replace("gpu-b", [cached("tiny", "partial"), cached("other")])
    caches.replace("gpu-a", [cached("tiny")])
    sessions = SessionRegistry()
    sessions.open("gpu-a", "id-a", "ipv4:127.0.0.1:1", 0.0, T0)

    async def scenario() -> None:
        async with served(db, objects, tmp_path, caches, sessions) as hub:
            made = await imported(hub, stream(start("tiny", FILES), data(FILES)))
            revision = import_revision((p, len(d), sha(d)) for p, d in FILES.items())
            entry = made.entry
            assert (entry.name, entry.source, entry.revision, entry.files, entry.size) == (
                "tiny",
                "import",
                revision,
                3,
                len(BIG) + 8,
            )
            assert (entry.state, entry.layout, entry.repo, entry.chunk_size) == (
                "ready", "files", "", CHUNK_SIZE)  # fmt: skip
            assert entry.pulled.ToDatetime(UTC) == T0

            listed = await hub.registry.ListEntries(pb.ListEntriesRequest())
            assert list(listed.entries) == [entry]

            shown = await hub.registry.GetEntry(pb.GetEntryRequest(name="tiny"))
            assert shown.entry == entry
            files = {f.path: (f.size, f.sha256, list(f.chunks)) for f in shown.files}
            assert files == {
                "model.gguf": (len(BIG), sha(BIG), [sha(BIG[:CHUNK_SIZE]), sha(BIG[CHUNK_SIZE:])]),
                "sub/config.json": (8, sha(b'{"a": 1}'), [sha(b'{"a": 1}')]),
                "empty.txt": (0, sha(b""), []),
            }
            assert [f.path for f in shown.files] == list(FILES)  # the header's order
            assert list(shown.models) == ["chat", "small"]
            assert [(c.node, c.state, c.verified, c.connected) for c in shown.caches] == [
                ("gpu-a", "complete", True, True), ("gpu-b", "partial", False, False)]  # fmt: skip
            assert shown.caches[0].path == "/cache/files/tiny"
            if kind == "s3":
                assert server.keys(bucket) == sorted(
                    f"models/tiny/{revision}/{path}" for path in FILES)  # fmt: skip

            whole = await download(hub, entry="tiny", revision=revision, path="model.gguf")
            assert b"".join(whole) == BIG and max(len(piece) for piece in whole) <= READ_PIECE
            part = await download(hub, entry="tiny", path="model.gguf", offset=CHUNK_SIZE - 5,
                                  length=2 * MiB)  # fmt: skip
            assert b"".join(part) == BIG[CHUNK_SIZE - 5 : CHUNK_SIZE - 5 + 2 * MiB]
            tail = await download(hub, entry="tiny", path="model.gguf", offset=len(BIG) - 3)
            assert b"".join(tail) == BIG[-3:]
            clipped = await download(hub, entry="tiny", path="model.gguf", offset=len(BIG) - 3,
                                     length=100)  # fmt: skip
            assert b"".join(clipped) == BIG[-3:]
            assert b"".join(await download(hub, entry="tiny", path="empty.txt")) == b""
            assert b"".join(await download(hub, entry="tiny", path="sub/config.json")) == (
                b'{"a": 1}')  # fmt: skip
            assert await download(hub, entry="tiny", path="model.gguf", offset=len(BIG)) == []

            half = Entry("half", "hf:org/half", "c" * 40, "hf", "org/half",
                         (EntryFile("a", 1, sha(b"a")),))  # fmt: skip
            await db.call(hub.service.entries.upsert, half)  # a pull under way
            bad: list[tuple[dict[str, Any], grpc.StatusCode, str]] = [
                ({"entry": "tiny", "path": "model.gguf", "offset": len(BIG) + 1},
                 grpc.StatusCode.OUT_OF_RANGE, "is past its end"),
                ({"entry": "tiny", "path": "nope"}, grpc.StatusCode.NOT_FOUND, "has no file"),
                ({"entry": "tiny", "path": "model.gguf", "revision": "0" * 64},
                 grpc.StatusCode.NOT_FOUND, f"is at revision {revision}"),
                ({"entry": "nope", "path": "x"}, grpc.StatusCode.NOT_FOUND, "no such entry"),
                ({"entry": "half", "path": "a"}, grpc.StatusCode.NOT_FOUND,
                 "registry entry 'half' cannot be fetched: the entry is pulling"),
            ]  # fmt: skip
            for ask, code, words in bad:
                error = await refused(download(hub, **ask))
                assert error.code() == code and words in (error.details() or ""), error

            again = await refused(imported(hub, stream(start("tiny", FILES), data(FILES))))
            assert again.code() == grpc.StatusCode.ALREADY_EXISTS
            assert again.details() == (
                "entry tiny exists (import, 3 files): remove it first (hubctl registry rm tiny) "
                "or pick another name"
            )
            assert await hub.registry.GetEntry(pb.GetEntryRequest(name="tiny")) == shown
            kept = ["model.gguf", "sub/config.json", "empty.txt"]  # the refusal kept them
            assert await leftovers(hub, tmp_path) == kept + (["tiny/"] if kind == "local" else [])

    asyncio.run(scenario())


def test_a_bad_sha256_is_refused_and_nothing_is_left(db: Database, local: ObjectStore,
                                                      tmp_path: Path) -> None:  # fmt: skip
    async def scenario() -> None:
        async with served(db, local, tmp_path) as hub:
            wrong = "f" * 64
            header_ = start("tiny", FILES, **{"model.gguf": wrong})  # config.json follows
            error = await refused(imported(hub, stream(header_, data(FILES))))
            assert error.code() == grpc.StatusCode.DATA_LOSS
            assert error.details() == (
                f"model.gguf: sha256 {sha(BIG)} is not the header's "
                f"{wrong}: the file changed or was damaged on the way; import it again"
            )
            assert (await hub.registry.ListEntries(pb.ListEntriesRequest())).entries == []
            assert await leftovers(hub, tmp_path) == []
            # The name is free: a good import of it goes through.
            made = await imported(hub, stream(start("tiny", FILES), data(FILES)))
            assert made.entry.state == "ready"

    asyncio.run(scenario())


def test_a_truncated_import_leaves_nothing(db: Database, local: ObjectStore,
                                           tmp_path: Path) -> None:  # fmt: skip
    cut = list(data(FILES))[:-2]  # the last piece of model.gguf and config.json never come

    async def scenario() -> None:
        async with served(db, local, tmp_path) as hub:
            error = await refused(imported(hub, stream(start("tiny", FILES), iter(cut))))
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert error.details() == (
                f"the import ended after {19 * MiB} of {len(BIG)} bytes of model.gguf: send "
                "every file of the header whole"
            )
            assert (await hub.registry.ListEntries(pb.ListEntriesRequest())).entries == []
            assert await leftovers(hub, tmp_path) == []

    asyncio.run(scenario())


def test_out_of_order_oversized_and_extra_data_are_refused(db: Database, local: ObjectStore,
                                                           tmp_path: Path) -> None:  # fmt: skip
    small = {"a.bin": b"a" * 10, "b.bin": b"b" * 10}
    cases = [
        ([pb.ImportChunk(data=pb.ImportData(path="b.bin", data=b"b"))],
         "data for 'b.bin' while a.bin is incomplete: send the header's files whole, in its order"),
        ([pb.ImportChunk(data=pb.ImportData(path="a.bin", data=b"a" * 11))],
         "a.bin: more than the header's 10 bytes"),
        ([pb.ImportChunk(data=pb.ImportData(path="a.bin", data=b"a" * (MiB + 1)))],
         f"a message of {MiB + 1} bytes: send each file's data in pieces of at most {MiB}"),
        ([*data(small), pb.ImportChunk(data=pb.ImportData(path="b.bin", data=b"b"))],
         "data for 'b.bin' after the last file of the header"),
        ([start("tiny", small)], "a second header: an import sends one, then its files' data"),
    ]  # fmt: skip

    async def scenario() -> None:
        async with served(db, local, tmp_path) as hub:
            for messages, details in cases:
                error = await refused(imported(hub, stream(start("tiny", small),
                                                                 iter(messages))))  # fmt: skip
                assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, details
                assert error.details() == details
                assert (await hub.registry.ListEntries(pb.ListEntriesRequest())).entries == []
            nothing = await refused(imported(hub, stream(iter(data(small)))))
            assert nothing.details() == ("an import starts with its header (ImportStart: name, "
                                         "layout, files with size and sha256)")  # fmt: skip

    asyncio.run(scenario())


def test_too_many_files_and_bad_headers_are_one_line(db: Database, local: ObjectStore,
                                                     tmp_path: Path) -> None:  # fmt: skip
    many = pb.ImportStart(name="tiny", files=[pb.ImportFileInfo(path=f"{i:x}", sha256=sha(b""))
                                              for i in range(MAX_FILES + 1)])  # fmt: skip
    assert many.ByteSize() > 4 * MiB  # more than the hub takes in one message: a bigger server

    async def scenario() -> None:
        async with served(db, local, tmp_path, max_message=16 * MiB) as hub:
            error = await refused(imported(hub, stream(pb.ImportChunk(start=many))))
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert error.details() == "more than 100000 files: an entry holds at most 100000"
            assert (await hub.registry.ListEntries(pb.ListEntriesRequest())).entries == []

    asyncio.run(scenario())
    good = sha(b"x")
    for start_, words in [
        (pb.ImportStart(name="Tiny", files=[pb.ImportFileInfo(path="a", sha256=good)]),
         "invalid entry name 'Tiny': a DNS label"),
        (pb.ImportStart(name="tiny"), "no files: an entry holds at least one file"),
        (pb.ImportStart(name="tiny", files=[pb.ImportFileInfo(path="../a", sha256=good)]),
         "invalid file path '../a' in the entry"),
        (pb.ImportStart(name="tiny", files=[pb.ImportFileInfo(path="a", size=(1 << 40) + 1,
                                                              sha256=good)]),
         "a: 1099511627777 bytes; a file in the registry is at most 1 TiB"),
        (pb.ImportStart(name="tiny", files=[pb.ImportFileInfo(path="a", sha256="ABC")]),
         "a: sha256 'ABC' is not 64 lowercase hex digits"),
        (pb.ImportStart(name="tiny", files=[pb.ImportFileInfo(path="a", sha256=good)] * 2),
         "a is listed twice"),
        (pb.ImportStart(name="tiny", files=[pb.ImportFileInfo(path="a", sha256=good),
                                            pb.ImportFileInfo(path="a/b", sha256=good)]),
         "a is both a file and the directory of a/b"),
        (pb.ImportStart(name="tiny", layout="hf",
                        files=[pb.ImportFileInfo(path="a", sha256=good)]),
         "the hf layout needs the repository id: --repo ORG/NAME"),
        (pb.ImportStart(name="tiny", layout="hf", repo="org--x/y",
                        files=[pb.ImportFileInfo(path="a", sha256=good)]),
         "invalid repository 'org--x/y'"),
        (pb.ImportStart(name="tiny", layout="zip",
                        files=[pb.ImportFileInfo(path="a", sha256=good)]),
         "layout 'zip': files"),
    ]:  # fmt: skip
        with pytest.raises(Invalid) as caught:
            header(start_)
        assert str(caught.value).startswith(words), str(caught.value)
    config = pb.ImportFileInfo(path="config.json", sha256=good)
    hf = header(pb.ImportStart(name="q", layout="hf", repo="Qwen/Qwen3-8B", files=[config]))
    assert (hf.layout, hf.repo, hf.source, hf.state) == ("hf", "Qwen/Qwen3-8B", "import", "pulling")


def test_remove_is_refused_while_used_unless_forced(db: Database, local: ObjectStore,
                                                   tmp_path: Path) -> None:  # fmt: skip
    caches = NodeCaches()
    caches.replace("gpu-a", [cached("tiny")])
    other = {"x.gguf": b"x" * 100}

    async def scenario() -> None:
        async with served(db, local, tmp_path, caches) as hub:
            await imported(hub, stream(start("tiny", FILES), data(FILES)))
            await imported(hub, stream(start("free", other), data(other)))
            error = await refused(hub.registry.RemoveEntry(pb.RemoveEntryRequest(name="tiny")))
            assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert error.details() == (
                "entry tiny is in use: models chat, small use it; nodes gpu-a cache it: change "
                "those model definitions' source, free the caches (hubctl models uncache MODEL "
                "--node N), or remove it anyway with --force"
            )
            assert await leftovers(hub, tmp_path) == [
                "model.gguf", "sub/config.json", "empty.txt", "tiny/"]  # fmt: skip

            caches.forget("gpu-a", "tiny")
            still = await refused(hub.registry.RemoveEntry(pb.RemoveEntryRequest(name="tiny")))
            assert "models chat, small use it: change" in (still.details() or "")

            gone = await hub.registry.RemoveEntry(pb.RemoveEntryRequest(name="tiny", force=True))
            assert gone.entry.name == "tiny" and list(gone.warnings) == [
                "models chat, small use it"]  # fmt: skip
            assert await leftovers(hub, tmp_path) == []
            listed = await hub.registry.ListEntries(pb.ListEntriesRequest())
            assert [e.name for e in listed.entries] == ["free"]
            unused = await hub.registry.RemoveEntry(pb.RemoveEntryRequest(name="free"))
            assert list(unused.warnings) == []
            assert not (tmp_path / "state" / "registry" / "free").exists()

            missing = await refused(hub.registry.RemoveEntry(pb.RemoveEntryRequest(name="tiny")))
            assert missing.code() == grpc.StatusCode.NOT_FOUND
            assert missing.details() == (
                "no registry entry named 'tiny': `hubctl registry` lists the entries"
            )
            shown = await refused(hub.registry.GetEntry(pb.GetEntryRequest(name="tiny")))
            assert shown.code() == grpc.StatusCode.NOT_FOUND

    asyncio.run(scenario())


def test_the_local_store_refuses_an_import_it_has_no_room_for(db: Database, tmp_path: Path) -> None:
    class Full(LocalStore):
        async def free_bytes(self) -> int | None:
            return 1000

    async def scenario() -> None:
        async with served(db, Full(tmp_path / "state" / "registry"), tmp_path) as hub:
            error = await refused(imported(hub, stream(start("tiny", FILES), data(FILES))))
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert (error.details() or "").startswith(
                f"the registry (directory {tmp_path / 'state' / 'registry'}) has 1000 bytes "
                f"free; the import needs {2 * len(BIG) + 8}")  # fmt: skip
            assert (await hub.registry.ListEntries(pb.ListEntriesRequest())).entries == []

    asyncio.run(scenario())


def test_a_hub_process_with_an_s3_registry(s3_server: S3Server, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """`gpufleet-hub --registry s3://BUCKET/PREFIX` with the AWS settings of its environment:
    an import lands in the bucket and comes back through Download; a bucket it cannot use
    stops it with one line and exit status 2."""
    s3_server.apply(monkeypatch)  # the hub process inherits the test's environment
    bucket = s3_server.fresh_bucket()
    fleet = Cluster(tmp_path, None, secure=False, hub_args=("--registry", f"s3://{bucket}/reg"))
    try:
        hub = fleet.start_hub()
        with hub.channel() as channel:
            registry = registry_pb2_grpc.RegistryStub(channel)  # type: ignore[no-untyped-call]
            made = registry.Import(stream(start("tiny", FILES), data(FILES)), timeout=60)
            assert made.entry.state == "ready" and made.entry.size == len(BIG) + 8
            listed = registry.ListEntries(pb.ListEntriesRequest(), timeout=10)
            assert [e.name for e in listed.entries] == ["tiny"]
            fetch = registry_pb2_grpc.RegistryFetchStub(channel)  # type: ignore[no-untyped-call]
            got = fetch.Download(pb.DownloadRequest(entry="tiny", path="model.gguf", offset=7),
                                 timeout=60)  # fmt: skip
            assert b"".join(chunk.data for chunk in got) == BIG[7:]
        revision = made.entry.revision
        assert s3_server.keys(bucket) == sorted(f"reg/tiny/{revision}/{p}" for p in FILES)
        assert hub.terminate() == 0
        assert "model registry in s3://" in hub.log()
    finally:
        for daemon in fleet.daemons:
            daemon.cleanup()

    broken = Cluster(tmp_path / "b", None, secure=False,
                     hub_args=("--registry", "s3://no-such-bucket/reg"))  # fmt: skip
    try:
        broken.hub.start()
        assert broken.hub.process is not None
        assert broken.hub.process.wait(60) == 2
        lines = [line for line in broken.hub.log().splitlines() if "gpufleet-hub:" in line]
        assert len(lines) == 1, broken.hub.log()
        assert lines[0].startswith(
            "gpufleet-hub: cannot use the registry s3://no-such-bucket/reg/ at http://127.0.0.1:"
        )
        assert "Traceback" not in broken.hub.log()
    finally:
        for daemon in broken.daemons:
            daemon.cleanup()


def test_an_import_the_hub_stop_interrupted_is_failed_then_replaced(
    db: Database, local: ObjectStore, tmp_path: Path
) -> None:
    left = tmp_path / "state" / SCRATCH / "tmp123" / "import-x"
    left.parent.mkdir(parents=True)
    left.write_bytes(b"half a file")
    half = header(start("tiny", FILES).start)  # the row an import makes as it starts
    RegistryStore(db.engine).upsert(half)

    async def scenario() -> None:
        async with served(db, local, tmp_path) as hub:
            assert not left.parent.exists()
            shown = await hub.registry.GetEntry(pb.GetEntryRequest(name="tiny"))
            assert (shown.entry.state, shown.entry.message) == (
                "failed", "the hub stopped during the import: import it again")  # fmt: skip
            made = await imported(hub, stream(start("tiny", FILES), data(FILES)))
            assert made.entry.state == "ready"

    asyncio.run(scenario())


def test_a_cancelled_import_leaves_nothing(db: Database, local: ObjectStore,
                                           tmp_path: Path) -> None:  # fmt: skip
    async def scenario() -> None:
        async with served(db, local, tmp_path) as hub:
            call = hub.registry.Import()
            await call.write(start("tiny", FILES))
            assert ACCEPTED in tuple(await call.initial_metadata())
            pieces = data(FILES)
            for _ in range(17):  # the first chunk of model.gguf and a bit more
                await call.write(next(pieces))
            listed = await hub.registry.ListEntries(pb.ListEntriesRequest())
            assert [(e.name, e.state, e.message) for e in listed.entries] == [
                ("tiny", "pulling", "importing")]  # fmt: skip
            call.cancel()
            for _ in range(100):
                listed = await hub.registry.ListEntries(pb.ListEntriesRequest())
                if not listed.entries and not await leftovers(hub, tmp_path):
                    break
                await asyncio.sleep(0.05)
            assert list(listed.entries) == [] and await leftovers(hub, tmp_path) == []
            assert hub.service._importing == set()

    asyncio.run(scenario())


def test_of_two_imports_of_one_name_at_once_one_is_refused_and_the_other_kept_whole(
    db: Database, local: ObjectStore, tmp_path: Path
) -> None:
    files = [{"a1.bin": os.urandom(1000), "a2.bin": os.urandom(1000)},
             {"b.bin": os.urandom(1000)}]  # fmt: skip

    async def scenario() -> None:
        async with served(db, local, tmp_path) as hub:
            calls = [hub.registry.Import(), hub.registry.Import()]
            # Both headers at once: one import claims the name, the other is refused.
            await asyncio.gather(
                *(c.write(start("tiny", f)) for c, f in zip(calls, files, strict=True))
            )
            meta = await asyncio.gather(*(c.initial_metadata() for c in calls))
            won = [i for i, m in enumerate(meta) if ACCEPTED in tuple(m or ())]
            assert len(won) == 1, meta
            winner, loser = calls[won[0]], calls[1 - won[0]]
            error = await refused(loser)
            assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert error.details() == ("entry tiny is being imported: import it once that "
                                       "ended, or import into another name")  # fmt: skip
            for message in data(files[won[0]]):
                await winner.write(message)
            await winner.done_writing()
            done: pb.ImportResponse = await winner
            assert done.entry.state == "ready"
            shown = await hub.registry.GetEntry(pb.GetEntryRequest(name="tiny"))
            assert sorted(f.path for f in shown.files) == sorted(files[won[0]])
            for file in shown.files:
                key = f"tiny/{shown.entry.revision}/{file.path}"
                assert await hub.objects.size(key) == file.size

    asyncio.run(scenario())


def test_a_refused_import_removes_only_its_own_revision(db: Database, local: ObjectStore,
                                                        tmp_path: Path) -> None:  # fmt: skip
    async def scenario() -> None:
        async with served(db, local, tmp_path) as hub:
            assert isinstance(local, LocalStore)
            other = local.root / "tiny" / ("e" * 64) / "kept.bin"  # another revision's object
            other.parent.mkdir(parents=True)
            other.write_bytes(b"kept")
            error = await refused(imported(hub, stream(start("tiny", {"x.bin": b"x"},
                                                             **{"x.bin": "0" * 64}),
                                                       data({"x.bin": b"x"}))))  # fmt: skip
            assert error.code() == grpc.StatusCode.DATA_LOSS
            assert other.read_bytes() == b"kept"

    asyncio.run(scenario())


class FullDisk(LocalStore):
    """The registry's disk fills up while a file is put: what the kernel answers then."""

    async def put_file(self, key: str, path: Path) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_during_an_import_is_one_line_and_nothing_is_left(
    db: Database, tmp_path: Path
) -> None:
    async def scenario() -> None:
        store = FullDisk(tmp_path / "state" / "registry")
        async with served(db, store, tmp_path) as hub:
            error = await refused(imported(hub, stream(start("tiny", FILES), data(FILES))))
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert error.details() == (
                f"the registry (directory {store.root}) is full (No space left on device): "
                "free space there, then import again"
            )
            assert (await hub.registry.ListEntries(pb.ListEntriesRequest())).entries == []
            assert await leftovers(hub, tmp_path) == []

    asyncio.run(scenario())


def test_an_import_larger_than_the_scratch_space_is_refused_up_front(
    db: Database, local: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = shutil.disk_usage
    scratch = tmp_path / "state" / SCRATCH

    def usage(path: str | os.PathLike[str]) -> Any:  # the OS's answer: 1000 bytes free
        found = real(path)
        return type(found)(found.total, found.used, 1000) if Path(path) == scratch else found

    monkeypatch.setattr(shutil, "disk_usage", usage)

    async def scenario() -> None:
        async with served(db, local, tmp_path) as hub:
            error = await refused(imported(hub, stream(start("tiny", FILES), data(FILES))))
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert error.details() == (
                f"the import scratch directory {scratch} has 1000 bytes free; the import "
                f"needs {len(BIG)} there (its largest file while it is received): free space "
                "there first"
            )
            assert (await hub.registry.ListEntries(pb.ListEntriesRequest())).entries == []

    asyncio.run(scenario())
