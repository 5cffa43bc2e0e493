"""Pulls from Hugging Face into the registry, through the Registry service's Pull over gRPC,
against the stand-in Hub process (huggingface_hub's own calls) and a real object store: the
embedded directory, and moto's S3 server."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import http.server
import json
import os
import shutil
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest

from gpufleet.v1 import registry_pb2 as pb
from gpufleet.v1 import registry_pb2_grpc
from hub.ops.manager import OperationManager
from hub.registry.caches import NodeCaches
from hub.registry.entries import CHUNK_SIZE, Entry
from hub.registry.hf import PIECE, RETRIES, HfConfig, HfError, HfRepo
from hub.registry.local import LocalStore
from hub.registry.pull import STAGING, STOPPED, amount
from hub.registry.service import RegistryService
from hub.registry.store import ObjectStore, open_store
from hub.sessions import SessionRegistry
from hub.store import Database, Store, migrate
from hub.store.operations import OperationRecord, OperationStore
from hub.store.registry import RegistryStore
from tests.support.hfhub import HfHub
from tests.support.s3server import start_or_skip

MODEL = os.urandom(CHUNK_SIZE + 12345)  # LFS (by its suffix): two chunks
CONFIG = b'{"architectures": ["TinyForCausalLM"]}'
README = b"# tiny\n"
TINY = {"model.safetensors": MODEL, "config.json": CONFIG, "sub/README.md": README}
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def hfhub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HfHub]:
    server = HfHub(tmp_path_factory.mktemp("hf") / "root")
    server.repo("acme/tiny", TINY)
    server.repo("acme/other", {"model.gguf": b"GGUF" + bytes(5000)})
    liar = os.urandom(3 * 1024 * 1024)
    server.repo("acme/liar", {"model.safetensors": liar})
    with server:
        # Served from now on with the hashes of the bytes it listed at start: a lying Hub.
        (server.root / "acme/liar/model.safetensors").write_bytes(bytes(len(liar)))
        server.faults()
        yield server


@dataclass
class Hub:
    """The parts of a hub a pull touches, in this process, with its Registry service."""

    db: Database
    manager: OperationManager
    objects: ObjectStore
    stub: registry_pb2_grpc.RegistryStub
    service: RegistryService

    async def pull(self, name: str, repo: str = "acme/tiny", revision: str = "",
                   include: tuple[str, ...] = ()) -> pb.PullResponse:  # fmt: skip
        request = pb.PullRequest(name=name, hf_repo=repo, revision=revision, include=include)
        reply: pb.PullResponse = await self.stub.Pull(request)
        return reply

    async def ended(self, operation_id: str) -> OperationRecord:
        async for _ in self.manager.watch(operation_id):
            pass
        found = await self.db.call(self.manager.store.get, operation_id)
        assert found is not None
        return self.manager.truthful(found)

    async def progress(self, operation_id: str) -> list[str]:
        events = await self.db.call(self.manager.store.events, operation_id)
        return [e.message for e in events if e.progress]

    async def entry(self, name: str) -> Entry:
        found = await self.db.call(RegistryStore(self.db.engine).get, name)
        assert found is not None
        return found

    async def object(self, key: str) -> bytes:
        return b"".join([piece async for piece in self.objects.read(key)])


@asynccontextmanager
async def running_hub(state_dir: Path, endpoint: str,
                      objects: ObjectStore | None = None) -> AsyncIterator[Hub]:  # fmt: skip
    """A hub's database, operations and Registry service on a loopback gRPC port; the same
    state_dir again is the same hub after a restart."""
    db = Database(f"sqlite:///{state_dir / 'hub.db'}")
    migrate(db.engine)
    await db.call(OperationStore(db.engine).interrupt_running, NOW)
    manager = OperationManager(SessionRegistry(), db, OperationStore(db.engine))
    store = objects or LocalStore(state_dir / "registry")
    await store.prepare()
    service = RegistryService(db, store, NodeCaches(), SessionRegistry(), manager,
                              Store(db.engine), state_dir / "models", state_dir)  # fmt: skip
    service.hf = HfConfig(endpoint)
    server = grpc.aio.server()
    registry_pb2_grpc.add_RegistryServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Hub(db, manager, store, registry_pb2_grpc.RegistryStub(channel), service)
    finally:
        await channel.close(None)
        await server.stop(None)
        await manager.shutdown()
        db.close()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def chunks(data: bytes) -> tuple[str, ...]:
    return tuple(sha(data[i : i + CHUNK_SIZE]) for i in range(0, len(data), CHUNK_SIZE))


def run(scenario: Callable[[], object]) -> None:
    asyncio.run(scenario())  # type: ignore[arg-type]


def test_a_pull_puts_every_file_in_the_store_with_sha256_and_chunks(
    hfhub: HfHub, tmp_path: Path
) -> None:
    commit = hfhub.commit("acme/tiny")
    served = {path: hfhub.served("acme/tiny", path) for path in TINY}

    async def scenario() -> None:
        async with running_hub(tmp_path, hfhub.endpoint) as hub:
            reply = await hub.pull("tiny")
            assert not reply.joined
            record = await hub.ended(reply.operation_id)
            assert (record.kind, record.status, record.configuration) == (
                "registry-pull", "succeeded", "tiny"
            )  # fmt: skip
            assert record.message.startswith(f"tiny: 3 files, 16.8 MB at commit {commit[:12]}")
            assert [(n.node, n.result) for n in record.nodes] == [("hub", "changed")]
            last = (await hub.progress(reply.operation_id))[-1]
            assert last.startswith("files 3/3, 16.8 MB of 16.8 MB, ") and "MB/s" in last

            entry = await hub.entry("tiny")
            assert (entry.state, entry.source, entry.revision, entry.layout, entry.repo) == (
                "ready", "hf:acme/tiny", commit, "hf", "acme/tiny"
            )  # fmt: skip
            assert entry.pulled is not None and entry.message == ""
            assert [(f.path, f.size, f.sha256, f.chunks) for f in entry.files] == [
                (path, len(TINY[path]), sha(TINY[path]), chunks(TINY[path]))
                for path in sorted(TINY)
            ]
            for path, data in TINY.items():
                assert await hub.object(f"tiny/{commit}/{path}") == data
            assert not (tmp_path / STAGING / "tiny").exists()

            # Again: the entry holds that commit already; nothing is fetched.
            again = await hub.ended((await hub.pull("tiny")).operation_id)
            assert again.status == "succeeded" and "already holds commit" in again.message
            # Fewer files of the same commit: all in the store already, nothing is fetched.
            fewer = await hub.ended((await hub.pull("tiny", include=("*.json",))).operation_id)
            assert fewer.status == "succeeded", fewer.message
            assert fewer.message.endswith("(0 B fetched)")
            assert [f.path for f in (await hub.entry("tiny")).files] == ["config.json"]

    run(scenario)
    for path, data in TINY.items():
        assert hfhub.served("acme/tiny", path) - served[path] == len(data)


def test_include_patterns_choose_the_files_and_none_matching_fails(
    hfhub: HfHub, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with running_hub(tmp_path, hfhub.endpoint) as hub:
            reply = await hub.pull("configs", include=("*.json", "sub/*"))
            assert (await hub.ended(reply.operation_id)).status == "succeeded"
            entry = await hub.entry("configs")
            assert [f.path for f in entry.files] == ["config.json", "sub/README.md"]

            reply = await hub.pull("nothing", include=("*.gguf",))
            record = await hub.ended(reply.operation_id)
            assert record.status == "failed"
            assert record.message == (
                "no file of acme/tiny matches --include *.gguf: check the repository and the "
                "patterns"
            )
            entry = await hub.entry("nothing")
            assert entry.state == "failed" and entry.message == record.message

    run(scenario)


def test_a_cut_download_resumes_from_the_last_byte_written(hfhub: HfHub, tmp_path: Path) -> None:
    before = hfhub.served("acme/tiny", "model.safetensors")
    hfhub.faults(abort_after=7_000_000, aborts=2)

    async def scenario() -> None:
        async with running_hub(tmp_path, hfhub.endpoint) as hub:
            reply = await hub.pull("cut", include=("*.safetensors",))
            record = await hub.ended(reply.operation_id)
            assert record.status == "succeeded", record.message
            found = (await hub.entry("cut")).files[0]
            assert (found.sha256, found.chunks) == (sha(MODEL), chunks(MODEL))

    try:
        run(scenario)
    finally:
        hfhub.faults()
    # Cut twice, resumed twice: no byte fetched twice.
    assert hfhub.served("acme/tiny", "model.safetensors") - before == len(MODEL)


def test_a_file_the_hub_keeps_failing_fails_the_pull_and_a_later_pull_succeeds(
    hfhub: HfHub, tmp_path: Path
) -> None:
    hfhub.faults(fail=RETRIES)

    async def scenario() -> None:
        async with running_hub(tmp_path, hfhub.endpoint) as hub:
            reply = await hub.pull("flaky", include=("*.json",))
            record = await hub.ended(reply.operation_id)
            assert record.status == "failed"
            assert record.message == (
                f"config.json: Hugging Face answered 503 ({RETRIES} tries); 0 bytes kept: pull "
                "again to resume"
            )
            assert (await hub.entry("flaky")).state == "failed"
            again = await hub.ended((await hub.pull("flaky", include=("*.json",))).operation_id)
            assert again.status == "succeeded", again.message
            assert (await hub.entry("flaky")).state == "ready"

    try:
        run(scenario)
    finally:
        hfhub.faults()


def test_a_cancelled_pull_keeps_its_part_and_a_restarted_hub_fetches_only_the_rest(
    hfhub: HfHub, tmp_path: Path
) -> None:
    before = hfhub.served("acme/tiny", "model.safetensors")
    hfhub.faults(rate=2_000_000)

    async def first() -> int:
        async with running_hub(tmp_path, hfhub.endpoint) as hub:
            reply = await hub.pull("slow", include=("*.safetensors",))
            async for event in hub.manager.watch(reply.operation_id):
                if event.progress and not event.message.startswith("files 0/1, 0 B"):
                    break  # bytes came (at 2 MB/s, a second's worth)
            await hub.manager.cancel(reply.operation_id, "tester")
            record = await hub.ended(reply.operation_id)
            assert record.status == "cancelled"
            assert record.message.endswith("kept for a resume: pull again to go on")
            entry = await hub.entry("slow")
            assert (entry.state, entry.message) == ("failed", "cancelled")
            return next((tmp_path / STAGING / "slow").rglob("*.part")).stat().st_size

    async def second() -> None:
        async with running_hub(tmp_path, hfhub.endpoint) as hub:  # the hub, restarted
            reply = await hub.pull("slow", include=("*.safetensors",))
            record = await hub.ended(reply.operation_id)
            assert record.status == "succeeded", record.message
            found = (await hub.entry("slow")).files[0]
            # The kept bytes were hashed again into the file's and its chunks' sha256.
            assert (found.sha256, found.chunks) == (sha(MODEL), chunks(MODEL))
            assert len(found.chunks) == 2

    try:
        kept = asyncio.run(first())
        hfhub.faults()
        asyncio.run(second())
    finally:
        hfhub.faults()
    assert PIECE < kept < len(MODEL)
    # What the cancel kept was read again, not fetched again: at most the piece under way
    # when the cancel came (gathered for its write, or still on its way) came twice.
    served = hfhub.served("acme/tiny", "model.safetensors") - before
    assert len(MODEL) <= served <= len(MODEL) + PIECE


def test_a_hub_that_stops_mid_pull_leaves_the_entry_failed_and_resumable(
    hfhub: HfHub, tmp_path: Path
) -> None:
    hfhub.faults(rate=2_000_000)

    async def stopped() -> None:
        async with running_hub(tmp_path, hfhub.endpoint) as hub:
            reply = await hub.pull("halted", include=("*.safetensors",))
            async for event in hub.manager.watch(reply.operation_id):
                if event.progress and not event.message.startswith("files 0/1, 0 B"):
                    break
        # Leaving the block stopped the hub's operations.

    async def restarted() -> None:
        async with running_hub(tmp_path, hfhub.endpoint) as hub:
            entry = await hub.entry("halted")
            assert (entry.state, entry.message) == ("failed", STOPPED)
            # One a hard stop left pulling: failed at the next start (the service's prepare,
            # which the hub runs at start).
            left = Entry("left", "hf:acme/tiny", "", layout="hf", repo="acme/tiny")
            await hub.db.call(RegistryStore(hub.db.engine).upsert, left)
            await hub.service.prepare()
            assert (await hub.entry("left")).state == "failed"
            assert await hub.service.interrupted_pulls() == []
            hfhub.faults()
            again = await hub.pull("halted", include=("*.safetensors",))
            record = await hub.ended(again.operation_id)
            assert record.status == "succeeded", record.message
            assert any(e.step == "resume" for e in await hub.db.call(
                hub.manager.store.events, record.id))  # fmt: skip

    try:
        asyncio.run(stopped())
        asyncio.run(restarted())
    finally:
        hfhub.faults()


def test_a_file_whose_sha256_is_not_what_the_hub_lists_is_refused(
    hfhub: HfHub, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with running_hub(tmp_path, hfhub.endpoint) as hub:
            reply = await hub.pull("liar", repo="acme/liar")
            record = await hub.ended(reply.operation_id)
            assert record.status == "failed"
            assert record.message.startswith("model.safetensors: sha256 ")
            assert record.message.endswith(
                "Hugging Face lists: the download was refused and removed"
            )
            entry = await hub.entry("liar")
            assert entry.state == "failed" and entry.files == ()
            commit = hfhub.commit("acme/liar")
            assert await hub.objects.size(f"liar/{commit}/model.safetensors") is None
            assert not list((tmp_path / STAGING).rglob("*.part"))

    run(scenario)


def test_pulls_of_one_entry_join_and_other_sources_are_refused(
    hfhub: HfHub, tmp_path: Path
) -> None:
    hfhub.faults(rate=8_000_000)

    async def scenario() -> None:
        async with running_hub(tmp_path, hfhub.endpoint) as hub:
            first, second = await asyncio.gather(hub.pull("shared"), hub.pull("shared"))
            assert first.operation_id == second.operation_id
            assert sorted([first.joined, second.joined]) == [False, True]
            with pytest.raises(grpc.aio.AioRpcError) as other:
                await hub.pull("shared", repo="acme/other")
            assert other.value.code() == grpc.StatusCode.ALREADY_EXISTS
            assert other.value.details() == (
                f"entry shared is being pulled from hf:acme/tiny by operation "
                f"{first.operation_id}: pull into another name, or cancel it "
                f"(hubctl ops cancel {first.operation_id})"
            )
            assert (await hub.ended(first.operation_id)).status == "succeeded"
            with pytest.raises(grpc.aio.AioRpcError) as taken:
                await hub.pull("shared", repo="acme/other")
            assert taken.value.code() == grpc.StatusCode.ALREADY_EXISTS
            assert taken.value.details() == (
                "entry shared holds hf:acme/tiny, not hf:acme/other: pull into another name, "
                "or remove it first (hubctl registry rm shared)"
            )

    try:
        run(scenario)
    finally:
        hfhub.faults()


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (pb.PullRequest(name="Bad_Name", hf_repo="acme/tiny"), "invalid entry name 'Bad_Name'"),
        (pb.PullRequest(name="ok", hf_repo="acme"), "invalid repository 'acme'"),
        (pb.PullRequest(name="ok", hf_repo="acme/tiny", revision="../x"), "invalid revision"),
        (pb.PullRequest(name="ok", hf_repo="acme/tiny", include=[""]), "invalid include pattern"),
        (pb.PullRequest(name="ok", hf_repo="acme/tiny", include=["*"] * 65),
         "65 include patterns: at most 64"),
    ],
)  # fmt: skip
def test_invalid_pulls_are_refused_with_one_line(
    hfhub: HfHub, tmp_path: Path, request_: pb.PullRequest, message: str
) -> None:
    async def scenario() -> None:
        async with running_hub(tmp_path, hfhub.endpoint) as hub:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await hub.stub.Pull(request_)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            details = refused.value.details() or ""
            assert details.startswith(message) and "\n" not in details
            assert hub.manager.reservations.held == {}

    run(scenario)


def test_unknown_repositories_and_revisions_fail_the_operation_with_one_line(
    hfhub: HfHub, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with running_hub(tmp_path, hfhub.endpoint) as hub:
            missing = await hub.ended((await hub.pull("gone", repo="acme/gone")).operation_id)
            assert missing.message == (
                f"repository acme/gone not found at {hfhub.endpoint}: check the name; a private "
                "one needs the hub's HF_TOKEN"
            )
            revision = await hub.ended((await hub.pull("rev", revision="v9")).operation_id)
            assert revision.message == (
                "acme/tiny has no revision 'v9': give a branch, tag or commit it has"
            )
            assert (await hub.entry("gone")).state == "failed"
            # A failed entry holds nothing: a pull of its name from elsewhere replaces it.
            fixed = await hub.pull("gone", include=("*.json",))
            assert (await hub.ended(fixed.operation_id)).status == "succeeded"
            entry = await hub.entry("gone")
            assert (entry.state, entry.source) == ("ready", "hf:acme/tiny")

    run(scenario)


def test_a_pull_into_s3(hfhub: HfHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s3 = start_or_skip()
    try:
        s3.apply(monkeypatch)
        bucket = s3.fresh_bucket()
        commit = hfhub.commit("acme/tiny")

        async def scenario() -> None:
            objects = open_store(s3.spec("models", bucket), tmp_path)
            async with running_hub(tmp_path, hfhub.endpoint, objects) as hub:
                reply = await hub.pull("tiny", revision=commit)
                record = await hub.ended(reply.operation_id)
                assert record.status == "succeeded", record.message
                assert (await hub.entry("tiny")).revision == commit
                assert await hub.object(f"tiny/{commit}/model.safetensors") == MODEL

        run(scenario)
        assert s3.keys(bucket) == [f"models/tiny/{commit}/{path}" for path in sorted(TINY)]
    finally:
        s3.stop()


def test_a_removal_refuses_a_running_pull_or_with_force_cancels_it_first(
    hfhub: HfHub, tmp_path: Path
) -> None:
    (tmp_path / "models").mkdir()  # no model definition uses the entry

    async def scenario() -> None:
        async with running_hub(tmp_path, hfhub.endpoint) as hub:
            small = await hub.pull("back", include=("*.json",))
            assert (await hub.ended(small.operation_id)).status == "succeeded"
            hfhub.faults(rate=2_000_000)
            reply = await hub.pull("back")  # the ready entry, pulled again with more files
            operation = reply.operation_id
            async for event in hub.manager.watch(operation):
                if event.progress and "0 B of" not in event.message:
                    break  # bytes are coming
            with pytest.raises(grpc.aio.AioRpcError) as plain:
                await hub.stub.RemoveEntry(pb.RemoveEntryRequest(name="back"))
            assert plain.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert plain.value.details() == (
                f"entry back is being pulled by operation {operation}: cancel it first "
                f"(hubctl ops cancel {operation}) or remove the entry with --force, which "
                "cancels it"
            )
            assert (await hub.entry("back")).state == "ready"
            chunk = pb.ImportChunk(
                start=pb.ImportStart(
                    name="back", files=[pb.ImportFileInfo(path="x.bin", size=1, sha256="0" * 64)]
                )
            )
            with pytest.raises(grpc.aio.AioRpcError) as imported:
                call = hub.stub.Import()
                await call.write(chunk)
                await call
            assert imported.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert imported.value.details() == (
                f"entry back is being pulled by operation {operation} (cancel it with "
                f"`hubctl ops cancel {operation}`): import it once that ended, or import into "
                "another name"
            )

            removed = await hub.stub.RemoveEntry(pb.RemoveEntryRequest(name="back", force=True))
            assert list(removed.warnings) == [
                f"its pull (operation {operation}) was cancelled"]  # fmt: skip
            assert (await hub.ended(operation)).status == "cancelled"
            hfhub.faults()
            await asyncio.sleep(0.3)  # nothing of the pull comes back
            listed = await hub.stub.ListEntries(pb.ListEntriesRequest())
            assert list(listed.entries) == []
            assert isinstance(hub.objects, LocalStore)
            assert not (hub.objects.root / "back").exists()
            assert not (tmp_path / STAGING / "back").exists()

    try:
        run(scenario)
    finally:
        hfhub.faults()


def test_a_pull_whose_row_was_removed_does_not_bring_it_back(hfhub: HfHub, tmp_path: Path) -> None:
    """The pull's last writes are compare-and-set: a row removed under it (here behind the
    service's back, as a cancel that timed out would leave it) stays removed."""
    hfhub.faults(rate=4_000_000)

    async def scenario() -> None:
        async with running_hub(tmp_path, hfhub.endpoint) as hub:
            reply = await hub.pull("gone", include=("*.safetensors",))
            async for event in hub.manager.watch(reply.operation_id):
                if event.progress and "0 B of" not in event.message:
                    break
            await hub.db.call(RegistryStore(hub.db.engine).remove, "gone")
            hfhub.faults()
            record = await hub.ended(reply.operation_id)
            assert record.message == "gone was removed during the pull: nothing kept"
            assert await hub.db.call(RegistryStore(hub.db.engine).get, "gone") is None
            assert isinstance(hub.objects, LocalStore)
            assert not (hub.objects.root / "gone").exists()

    try:
        run(scenario)
    finally:
        hfhub.faults()


def test_a_commit_that_is_not_40_hex_digits_is_refused(tmp_path: Path) -> None:
    class Lying(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"id": "acme/evil", "sha": "../../../etc", "siblings": []}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Lying)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(HfError) as caught:
            asyncio.run(HfRepo(HfConfig(endpoint), "acme/evil").resolve("main"))
    finally:
        server.shutdown()
        server.server_close()
    assert str(caught.value) == (
        "Hugging Face named commit '../../../etc' for main of acme/evil, not 40 hex digits: "
        f"check the endpoint {endpoint}"
    )


def test_staging_on_the_stores_disk_needs_room_for_both(
    hfhub: HfHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    need = sum(len(data) for data in TINY.values())
    real = shutil.disk_usage

    def usage(path: str | os.PathLike[str]) -> Any:  # the OS's answer for the staging disk
        found = real(path)
        staged = str(path).startswith(str(tmp_path / STAGING))
        return type(found)(found.total, found.used, need + len(MODEL)) if staged else found

    monkeypatch.setattr(shutil, "disk_usage", usage)

    async def scenario() -> None:
        async with running_hub(tmp_path, hfhub.endpoint) as hub:
            record = await hub.ended((await hub.pull("tight")).operation_id)
            assert record.status == "failed"
            assert record.message == (
                f"the staging directory {tmp_path / STAGING} and the registry (directory "
                f"{tmp_path / 'registry'}) share a disk with {amount(need + len(MODEL))} free; "
                f"the pull needs {amount(need + 4 * len(MODEL))} (its files, and 4 of the "
                "largest in flight): free space there first"
            )

    run(scenario)


class FullStore(LocalStore):
    """The registry's disk fills up while a file is put: what the kernel answers then."""

    async def put_file(self, key: str, path: Path) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_store_that_cannot_take_a_file_is_named_not_the_staging_directory(
    hfhub: HfHub, tmp_path: Path
) -> None:
    async def scenario() -> None:
        store = FullStore(tmp_path / "elsewhere")
        async with running_hub(tmp_path, hfhub.endpoint, store) as hub:
            reply = await hub.pull("full", include=("config.json",))
            record = await hub.ended(reply.operation_id)
            commit = hfhub.commit("acme/tiny")
            assert record.message == (
                f"cannot write full/{commit}/config.json into the registry (directory "
                f"{store.root}): No space left on device: free space there first"
            )

    run(scenario)


def test_removing_an_entry_drops_what_its_cancelled_pull_kept(hfhub: HfHub, tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    hfhub.faults(rate=2_000_000)

    async def scenario() -> None:
        async with running_hub(tmp_path, hfhub.endpoint) as hub:
            reply = await hub.pull("kept", include=("*.safetensors",))
            async for event in hub.manager.watch(reply.operation_id):
                if event.progress and "0 B of" not in event.message:
                    break
            await hub.manager.cancel(reply.operation_id, "tester")
            assert list((tmp_path / STAGING / "kept").rglob("*.part"))
            await hub.stub.RemoveEntry(pb.RemoveEntryRequest(name="kept"))
            assert not (tmp_path / STAGING / "kept").exists()

    try:
        run(scenario)
    finally:
        hfhub.faults()
