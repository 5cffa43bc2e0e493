"""The registry's object stores, the embedded directory and S3 (moto's server process), through
the same tests: puts, ranged reads, sizes, deletes by prefix, presigned URLs fetched with a
Range; and `--registry` values open_store accepts or refuses with one line."""

from __future__ import annotations

import asyncio
import os
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber

from hub.registry.entries import FAILED, PULLING, READY, Entry, EntryFile
from hub.registry.local import PARTIAL, LocalStore
from hub.registry.s3 import S3Store
from hub.registry.store import (
    READ_PIECE,
    NotFound,
    ObjectStore,
    StoreError,
    open_store,
    s3_location,
)
from hub.store import sqlite_url
from hub.store.db import make_engine, migrate
from hub.store.registry import RegistryStore
from tests.support.s3server import S3Server, start_or_skip

DATA = os.urandom(3 * READ_PIECE + 12345)


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    server = start_or_skip()
    yield server
    server.stop()


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> ObjectStore:  # fmt: skip
    if request.param == "local":
        return open_store(None, tmp_path)
    server: S3Server = request.getfixturevalue("s3_server")
    server.apply(monkeypatch)
    return open_store(server.spec("reg/v1", server.fresh_bucket()), tmp_path)


def source(tmp_path: Path, data: bytes, name: str = "source.bin") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


async def read(store: ObjectStore, key: str, offset: int = 0, length: int | None = None) -> bytes:
    pieces = [piece async for piece in store.read(key, offset, length)]
    assert all(0 < len(piece) <= READ_PIECE for piece in pieces)
    return b"".join(pieces)


def test_put_read_ranges_size_and_delete(store: ObjectStore, tmp_path: Path) -> None:
    async def scenario() -> None:
        await store.prepare()
        await store.put_file("tiny/rev1/sub/model.bin", source(tmp_path, DATA))
        await store.put_file("tiny/rev1/config.json", source(tmp_path, b"{}", "c.json"))
        await store.put_file("tiny/rev1/empty", source(tmp_path, b"", "e"))
        await store.put_file("other/rev9/x", source(tmp_path, b"x", "x"))
        assert await store.size("tiny/rev1/sub/model.bin") == len(DATA)
        assert await store.size("tiny/rev1/empty") == 0
        assert await store.size("tiny/rev1/missing") is None
        assert await read(store, "tiny/rev1/sub/model.bin") == DATA
        assert await read(store, "tiny/rev1/config.json") == b"{}"
        assert await read(store, "tiny/rev1/empty") == b""
        for offset, length in [(0, 1), (5, 100), (READ_PIECE - 1, READ_PIECE + 2),
                               (len(DATA) - 10, None), (len(DATA) - 10, 10), (len(DATA), None),
                               (123, 0), (2 * READ_PIECE, None)]:  # fmt: skip
            end = None if length is None else offset + length
            assert await read(store, "tiny/rev1/sub/model.bin", offset, length) == DATA[offset:end]
        with pytest.raises(NotFound):
            await read(store, "tiny/rev1/missing")

        # A second put of a key replaces the object whole.
        await store.put_file("tiny/rev1/config.json", source(tmp_path, b'{"a": 1}', "c2.json"))
        assert await read(store, "tiny/rev1/config.json") == b'{"a": 1}'

        await store.delete_prefix("tiny/")
        assert await store.size("tiny/rev1/sub/model.bin") is None
        assert await store.size("tiny/rev1/config.json") is None
        assert await read(store, "other/rev9/x") == b"x"  # another entry stays
        await store.delete_prefix("tiny/")  # nothing there: no error

    asyncio.run(scenario())


def test_presigned_urls_take_a_range(store: ObjectStore, tmp_path: Path) -> None:
    async def put() -> None:
        await store.prepare()
        await store.put_file("tiny/rev1/model.bin", source(tmp_path, DATA))

    asyncio.run(put())
    url = store.presign("tiny/rev1/model.bin", 600)
    if store.kind == "local":
        assert url is None  # agents fetch through the hub's RegistryFetch.Download
        return
    assert url is not None and "X-Amz-Signature=" in url and "X-Amz-Expires=600" in url
    ask = urllib.request.Request(url, headers={"Range": "bytes=1000-2999"})
    with urllib.request.urlopen(ask, timeout=30) as answer:
        assert answer.status == 206
        assert answer.read() == DATA[1000:3000]
    with urllib.request.urlopen(url, timeout=30) as answer:
        assert answer.read() == DATA


def test_free_bytes_and_description(store: ObjectStore, tmp_path: Path) -> None:
    asyncio.run(store.prepare())
    free = asyncio.run(store.free_bytes())
    if store.kind == "local":
        assert free is not None and free > 0
        assert store.describe() == f"directory {tmp_path / 'registry'}"
    else:
        assert free is None
        assert store.describe().startswith("s3://gpufleet-test-") and "/reg/v1/ at http://" in (
            store.describe()
        )


def test_a_local_put_is_whole_or_absent(tmp_path: Path) -> None:
    """The object appears by a rename: an interrupted put leaves only a temporary file under
    .partial/, which prepare() sweeps; keys cannot leave the directory."""
    store = LocalStore(tmp_path / "registry")
    asyncio.run(store.prepare())
    leftover = tmp_path / "registry" / PARTIAL / "put-interrupted"
    leftover.write_bytes(b"half")
    with pytest.raises(FileNotFoundError):
        asyncio.run(store.put_file("tiny/rev1/model.bin", tmp_path / "vanished"))
    assert asyncio.run(store.size("tiny/rev1/model.bin")) is None
    assert [p.name for p in (tmp_path / "registry" / PARTIAL).iterdir()] == ["put-interrupted"]
    asyncio.run(store.prepare())
    assert list((tmp_path / "registry" / PARTIAL).iterdir()) == []
    for key in ["../escape", "tiny/../../x", "/abs", f"{PARTIAL}/x", "a//b"]:
        with pytest.raises(StoreError, match="invalid object key"):
            asyncio.run(store.size(key))


def test_an_unusable_directory_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError) as caught:
        asyncio.run(open_store(str(blocker / "registry"), tmp_path).prepare())
    message = str(caught.value)
    assert message.startswith(f"cannot use the registry directory {blocker / 'registry'}: ")
    assert "choose another with --registry" in message and "\n" not in message


@pytest.mark.parametrize(("spec", "expected"), [
    ("s3://models", ("models", "")),
    ("s3://models/", ("models", "")),
    ("s3://models/gpufleet/registry/", ("models", "gpufleet/registry/")),
    ("s3://my.bucket-1/p", ("my.bucket-1", "p/")),
])  # fmt: skip
def test_s3_specs(spec: str, expected: tuple[str, str]) -> None:
    assert s3_location(spec) == expected


@pytest.mark.parametrize("spec", ["s3://", "s3://UPPER/x", "s3://ab", "s3://b/../x",
                                  "s3://b//x", "ftp://host/x"])  # fmt: skip
def test_bad_specs_are_one_line(spec: str, tmp_path: Path) -> None:
    with pytest.raises(StoreError) as caught:
        open_store(spec, tmp_path)
    assert str(caught.value).startswith(f"--registry {spec}: ")
    assert "\n" not in str(caught.value)


def test_local_specs(tmp_path: Path) -> None:
    default = open_store("", tmp_path)
    assert isinstance(default, LocalStore) and default.root == tmp_path / "registry"
    named = open_store(str(tmp_path / "elsewhere"), tmp_path)
    assert isinstance(named, LocalStore) and named.root == tmp_path / "elsewhere"


def test_a_missing_bucket_is_one_line(s3_server: S3Server, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    s3_server.apply(monkeypatch)
    store = open_store("s3://no-such-bucket/registry", tmp_path)
    assert isinstance(store, S3Store)
    with pytest.raises(StoreError) as caught:
        asyncio.run(store.prepare())
    message = str(caught.value)
    assert message.startswith("cannot use the registry s3://no-such-bucket/registry/ at http://")
    assert "404" in message and "AWS_ENDPOINT_URL_S3" in message and "\n" not in message


def test_objects_s3_would_not_delete_are_a_store_error() -> None:
    """delete_objects answers the keys it refused in Errors, not with an exception: the removal
    fails (one line) instead of leaving them silently. The S3 API is faked at its edge."""
    client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="k",
                          aws_secret_access_key="s")  # fmt: skip
    store = S3Store("bucket", "reg/", client)
    keys = ["reg/tiny/r1/a.bin", "reg/tiny/r1/b.bin"]
    with Stubber(client) as stub:
        stub.add_response("list_objects_v2", {"Contents": [{"Key": k} for k in keys]},
                          {"Bucket": "bucket", "Prefix": "reg/tiny/"})  # fmt: skip
        stub.add_response(
            "delete_objects",
            {"Errors": [{"Key": keys[1], "Code": "AccessDenied", "Message": "Access Denied"}]},
            {"Bucket": "bucket", "Delete": {"Objects": [{"Key": k} for k in keys],
                                            "Quiet": True}},
        )  # fmt: skip
        with pytest.raises(StoreError) as caught:
            asyncio.run(store.delete_prefix("tiny/"))
        stub.assert_no_pending_responses()
    message = str(caught.value)
    assert message == ("s3://bucket: 1 objects under reg/tiny/ were not deleted "
                       "(reg/tiny/r1/b.bin: AccessDenied Access Denied)")  # fmt: skip


# -- the entries' rows -------------------------------------------------------------------------


@pytest.fixture
def rows(tmp_path: Path, db_url: str | None) -> Iterator[RegistryStore]:
    engine = make_engine(db_url or sqlite_url(tmp_path))
    migrate(engine)
    yield RegistryStore(engine)
    engine.dispose()


def test_entry_rows(rows: RegistryStore) -> None:
    big = EntryFile("model-00001.safetensors", 5 << 40, "a" * 64, ("b" * 64, "c" * 64))
    pulling = Entry("qwen3-8b", "hf:Qwen/Qwen3-8B", "d" * 40, "hf", "Qwen/Qwen3-8B",
                    (big, EntryFile("config.json", 10, "e" * 64, ("e" * 64,))))  # fmt: skip
    assert rows.upsert(pulling) == pulling and rows.get("qwen3-8b") == pulling
    assert pulling.size == (5 << 40) + 10 and pulling.state == PULLING  # sizes past 32 bits
    other = Entry("aaa", "import", "f" * 64, files=(EntryFile("x.gguf", 1, "1" * 64),))
    rows.upsert(other)
    assert [e.name for e in rows.all()] == ["aaa", "qwen3-8b"]

    when = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
    ready = rows.set_state("qwen3-8b", READY, pulled=when)
    assert ready is not None and ready.ready and ready.pulled == when and ready.files == (
        pulling.files)  # fmt: skip
    failed = rows.set_state("qwen3-8b", FAILED, "cancelled")
    assert failed is not None and (failed.state, failed.message, failed.pulled) == (
        FAILED, "cancelled", when)  # fmt: skip
    assert rows.set_state("nope", READY) is None

    replaced = Entry("qwen3-8b", "hf:Qwen/Qwen3-8B", "9" * 40, "hf", "Qwen/Qwen3-8B", (big,),
                     READY, pulled=when)  # fmt: skip
    assert rows.upsert(replaced) == rows.get("qwen3-8b") == replaced

    assert rows.interrupt("import", "stopped") == ["aaa"]  # pulling imports only
    found = rows.get("aaa")
    assert found is not None and (found.state, found.message) == (FAILED, "stopped")
    assert rows.interrupt("import", "stopped") == []
    assert rows.remove("aaa") == found and rows.get("aaa") is None and rows.remove("aaa") is None
