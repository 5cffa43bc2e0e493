"""The hub's wheel cache: a real HubServer on loopback with the agent's own client (GrpcWheels
from agent/envs/wheels.py) uploading and downloading; refusals (sha256, size, key, file name,
a key held already) leave nothing behind; two uploads of one key: one wins; the store's
directories are interchangeable with the agent tests' server (tests/agent/wheel_server.py)."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import BinaryIO

import grpc
import pytest

from agent.envs.record import WheelInfo
from agent.envs.wheels import GrpcWheels
from agent.link import insecure_channel
from gpufleet import envkey
from gpufleet.v1 import agent_link_pb2 as pb
from gpufleet.v1 import agent_link_pb2_grpc
from hub.envs.wheels import Wheel, WheelError, WheelStore, wheel_from_proto
from hub.server import HubConfig, HubServer
from tests.agent.wheel_server import WheelServer

FILENAME = "llama_cpp_python-0.3.36-py3-none-linux_x86_64.whl"


def parts(backend: str = "cpu", version: str = "0.3.36") -> dict[str, str]:
    return envkey.parts(version, backend, "", [], "x86_64", "glibc 2.36", "cp311")


def wheel_file(directory: Path, size: int, seed: int = 0) -> tuple[Path, WheelInfo]:
    """A file of `size` bytes (contents need not be a wheel: the cache stores bytes) and the
    WheelInfo an agent would upload it with."""
    directory.mkdir(parents=True, exist_ok=True)
    data = (hashlib.sha256(str(seed).encode()).digest() * (size // 32 + 1))[:size]
    path = directory / FILENAME
    path.write_bytes(data)
    found = parts(version=f"0.3.{36 + seed}")
    info = WheelInfo(envkey.key(found), FILENAME, size, hashlib.sha256(data).hexdigest(), found,
                     "node-a", time.time())  # fmt: skip
    return path, info


def meta(info: WheelInfo, **changes: object) -> pb.WheelMeta:
    found = pb.WheelMeta(key=info.key, filename=info.filename, size=info.size, sha256=info.sha256,
                         parts=dict(info.parts), built_on=info.built_on)  # fmt: skip
    for name, value in changes.items():
        setattr(found, name, value)
    return found


def run(tmp: Path, scenario: Callable[[HubServer, str], Awaitable[None]]) -> None:
    async def main() -> None:
        server = HubServer(HubConfig("127.0.0.1:0", tmp / "hub", heartbeat_interval=0.5,
                                     insecure=True))  # fmt: skip
        await server.start()
        try:
            await scenario(server, f"127.0.0.1:{server.port}")
        finally:
            await server.stop(grace=1)

    asyncio.run(main())


async def upload(target: str, chunks: list[pb.WheelChunk]) -> grpc.StatusCode:
    async def stream() -> AsyncIterator[pb.WheelChunk]:
        for chunk in chunks:
            yield chunk

    async with grpc.aio.insecure_channel(target) as channel:
        try:
            await agent_link_pb2_grpc.WheelCacheStub(channel).Upload(stream(), timeout=30)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


def held(root: Path) -> list[str]:
    """Everything in the cache's directory: no temporary leftovers, only whole wheels."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def test_an_agent_uploads_and_downloads_a_wheel_through_the_hub(tmp_path: Path) -> None:
    path, info = wheel_file(tmp_path / "built", 2 * 1024 * 1024 + 12345)  # three chunks

    async def scenario(server: HubServer, target: str) -> None:
        wheels = GrpcWheels(insecure_channel(target))
        await wheels.upload(path, info)
        root = tmp_path / "hub" / "wheels"
        assert held(root) == [info.key, f"{info.key}/{FILENAME}", f"{info.key}/meta.json"]
        [stored] = WheelStore(root).list()
        assert (stored.key, stored.size, stored.sha256) == (info.key, info.size, info.sha256)
        assert stored.parts == info.parts and stored.built_on == "node-a"

        (tmp_path / "node-b").mkdir()
        got = await wheels.download(info.key, tmp_path / "node-b")
        assert got == tmp_path / "node-b" / FILENAME
        assert got.read_bytes() == path.read_bytes()
        assert await wheels.download("0" * 64, tmp_path / "node-b") is None  # not held
        assert os.listdir(tmp_path / "node-b") == [FILENAME]

        await wheels.upload(path, info)  # held already: ALREADY_EXISTS, which is as good
        assert await upload(target, [pb.WheelChunk(meta=meta(info), data=path.read_bytes())]) == (
            grpc.StatusCode.ALREADY_EXISTS)  # fmt: skip
        assert held(root) == [info.key, f"{info.key}/{FILENAME}", f"{info.key}/meta.json"]

    run(tmp_path, scenario)


def test_bad_uploads_are_refused_and_leave_nothing(tmp_path: Path) -> None:
    path, info = wheel_file(tmp_path / "built", 300_000)
    data = path.read_bytes()
    other = parts(backend="vulkan")
    timeless = meta(info)
    timeless.built_at.seconds = 2**62  # past year 9999

    async def scenario(server: HubServer, target: str) -> None:
        cases = {
            "corrupt": ([pb.WheelChunk(meta=meta(info), data=data[:-1] + b"x")],
                        grpc.StatusCode.DATA_LOSS),
            "short": ([pb.WheelChunk(meta=meta(info), data=data[:-10])],
                      grpc.StatusCode.DATA_LOSS),
            "long": ([pb.WheelChunk(meta=meta(info), data=data), pb.WheelChunk(data=b"more")],
                     grpc.StatusCode.DATA_LOSS),
            "key": ([pb.WheelChunk(meta=meta(info, key="../../etc"), data=data)],
                    grpc.StatusCode.INVALID_ARGUMENT),
            "upper": ([pb.WheelChunk(meta=meta(info, key=info.key.upper()), data=data)],
                      grpc.StatusCode.INVALID_ARGUMENT),
            "parts": ([pb.WheelChunk(meta=meta(info, key=envkey.key(other)), data=data)],
                      grpc.StatusCode.INVALID_ARGUMENT),
            "path": ([pb.WheelChunk(meta=meta(info, filename="../x.whl"), data=data)],
                     grpc.StatusCode.INVALID_ARGUMENT),
            "hidden": ([pb.WheelChunk(meta=meta(info, filename=".x.whl"), data=data)],
                       grpc.StatusCode.INVALID_ARGUMENT),
            "not a wheel": ([pb.WheelChunk(meta=meta(info, filename="x.tar.gz"), data=data)],
                            grpc.StatusCode.INVALID_ARGUMENT),
            "no meta": ([pb.WheelChunk(data=data)], grpc.StatusCode.INVALID_ARGUMENT),
            "two metas": ([pb.WheelChunk(meta=meta(info), data=data[:10]),
                           pb.WheelChunk(meta=meta(info), data=data[10:])],
                          grpc.StatusCode.INVALID_ARGUMENT),
            "nothing": ([], grpc.StatusCode.INVALID_ARGUMENT),
            "built_at": ([pb.WheelChunk(meta=timeless, data=data)],
                         grpc.StatusCode.INVALID_ARGUMENT),
        }  # fmt: skip
        for name, (chunks, expected) in cases.items():
            assert await upload(target, chunks) == expected, name
        root = tmp_path / "hub" / "wheels"
        assert held(root) == []
        async with grpc.aio.insecure_channel(target) as channel:
            stub = agent_link_pb2_grpc.WheelCacheStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                async for _ in stub.Download(pb.WheelQuery(key="../meta"), timeout=10):
                    pass
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        # A wheel damaged on the hub's disk is not sent.
        assert await upload(target, [pb.WheelChunk(meta=meta(info), data=data)]) == (
            grpc.StatusCode.OK)  # fmt: skip
        (root / info.key / FILENAME).write_bytes(data[:1000])
        async with grpc.aio.insecure_channel(target) as channel:
            stub = agent_link_pb2_grpc.WheelCacheStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                async for _ in stub.Download(pb.WheelQuery(key=info.key), timeout=10):
                    pass
        assert refused.value.code() == grpc.StatusCode.DATA_LOSS
        assert f"hubctl envs cache rm {info.key[:12]}" in (refused.value.details() or "")

    run(tmp_path, scenario)


def test_of_two_uploads_of_one_key_one_wins_and_no_half_wheel_is_seen(tmp_path: Path) -> None:
    path, info = wheel_file(tmp_path / "built", 100_000)
    data = path.read_bytes()
    wheel = wheel_from_proto(meta(info))
    store = WheelStore(tmp_path / "wheels")
    store.prepare()

    async def main() -> None:
        started, release = asyncio.Event(), asyncio.Event()

        async def slow() -> AsyncIterator[bytes]:
            yield data[:50_000]
            started.set()
            await release.wait()
            yield data[50_000:]

        async def fast() -> AsyncIterator[bytes]:
            yield data

        first = asyncio.create_task(store.put(wheel, slow()))
        await started.wait()
        assert store.get(info.key) is None and store.list() == []  # half written: not seen
        assert await store.put(wheel, fast()) == wheel
        release.set()
        with pytest.raises(WheelError) as lost:
            await first
        assert lost.value.kind == "exists"
        assert held(store.root) == [info.key, f"{info.key}/{FILENAME}", f"{info.key}/meta.json"]
        assert store.path(wheel).read_bytes() == data

    asyncio.run(main())


def test_the_size_cap_free_space_and_a_broken_stream_leave_nothing(tmp_path: Path) -> None:
    path, info = wheel_file(tmp_path / "built", 100_000)
    data = path.read_bytes()
    wheel = wheel_from_proto(meta(info))

    async def chunks() -> AsyncIterator[bytes]:
        yield data

    async def broken() -> AsyncIterator[bytes]:
        yield data[:1000]
        raise ConnectionResetError("the node went away")

    async def main() -> None:
        capped = WheelStore(tmp_path / "capped", max_bytes=50_000)
        with pytest.raises(WheelError, match="at most 50000 bytes") as refused:
            await capped.put(wheel, chunks())
        assert refused.value.kind == "space"
        full = WheelStore(tmp_path / "full", free=lambda _root: 10 << 20)  # 10 MiB free
        with pytest.raises(WheelError, match="10 MiB free") as refused:
            await full.put(wheel, chunks())
        assert refused.value.kind == "space" and "free some space" in str(refused.value)
        store = WheelStore(tmp_path / "broken")
        with pytest.raises(ConnectionResetError):
            await store.put(wheel, broken())
        (tmp_path / "a-file").write_text("not a directory\n")  # a state dir that cannot be
        unusable = WheelStore(tmp_path / "a-file" / "wheels")
        with pytest.raises(WheelError, match=r"could not store .* check the hub.s disk") as refused:
            await unusable.put(wheel, chunks())
        assert refused.value.kind == "damaged" and "\n" not in str(refused.value)
        for root in ("capped", "full", "broken"):
            assert held(tmp_path / root) == [], root

    asyncio.run(main())


def test_a_disk_that_fills_up_or_fails_under_an_upload_leaves_nothing(tmp_path: Path) -> None:
    """The write of a chunk fails (the disk: ENOSPC, EDQUOT, EIO): a one-line refusal naming
    the fix, no traceback, nothing left in the cache's directory."""
    path, info = wheel_file(tmp_path / "built", 100_000)
    data = path.read_bytes()
    wheel = wheel_from_proto(meta(info))

    async def chunks() -> AsyncIterator[bytes]:
        yield data[:60_000]
        yield data[60_000:]

    def failing(code: int) -> Callable[[BinaryIO, bytes], None]:
        written: list[int] = []

        def write(file: BinaryIO, chunk: bytes) -> None:
            if written:  # the second chunk: the first went to the file
                raise OSError(code, os.strerror(code))
            written.append(file.write(chunk))

        return write

    async def main() -> None:
        for code, kind, fix in ((errno.ENOSPC, "space", "free space on the hub"),
                                (errno.EDQUOT, "space", "free space on the hub"),
                                (errno.EIO, "damaged", "check the hub's disk")):  # fmt: skip
            root = tmp_path / errno.errorcode[code]
            store = WheelStore(root, write=failing(code))
            with pytest.raises(WheelError) as refused:
                await store.put(wheel, chunks())
            message = str(refused.value)
            assert refused.value.kind == kind and fix in message, message
            assert str(root) in message and os.strerror(code) in message and "\n" not in message
            assert held(root) == [] and store.list() == []
            assert store._reserved == {}  # the space it would have taken is free again
        # The disk is fine again: the same store takes the wheel.
        store = WheelStore(tmp_path / "ENOSPC")
        assert await store.put(wheel, chunks()) == wheel
        assert store.path(wheel).read_bytes() == data

    asyncio.run(main())


def test_start_removes_leftovers_and_the_layout_is_the_test_servers(tmp_path: Path) -> None:
    path, info = wheel_file(tmp_path / "built", 5000)
    # Written by the agent tests' server: the hub's store reads it as its own.
    server = WheelServer(tmp_path / "wheels")
    try:
        asyncio.run(GrpcWheels(insecure_channel(server.target)).upload(path, info))
    finally:
        server.close()
    root = tmp_path / "wheels"
    (root / ".upload-0123456789abcdef-1234abcd").mkdir()
    (root / ".upload-0123456789abcdef-1234abcd" / FILENAME).write_bytes(b"half")
    (root / ".remove-0123456789abcdef-1234abcd").mkdir()
    store = WheelStore(root)
    assert store.prepare() == 2
    [found] = store.list()
    assert isinstance(found, Wheel)
    assert (found.key, found.filename, found.sha256, found.built_on) == (
        info.key, FILENAME, info.sha256, "node-a")  # fmt: skip
    assert store.resolve(info.key[:8]) == found
    for bad in (info.key[:7], "zz" * 8, "0" * 8):
        with pytest.raises(WheelError):
            store.resolve(bad)
    # The other way: what the hub stored, the test server serves.
    second, second_info = wheel_file(tmp_path / "second", 7000, seed=1)

    async def upload_to_hub(server: HubServer, target: str) -> None:
        await GrpcWheels(insecure_channel(target)).upload(second, second_info)

    run(tmp_path, upload_to_hub)
    served = WheelServer(tmp_path / "hub" / "wheels")
    try:
        got = asyncio.run(GrpcWheels(insecure_channel(served.target)).download(
            second_info.key, tmp_path / "built"))  # fmt: skip
    finally:
        served.close()
    assert got is not None and got.read_bytes() == second.read_bytes()
    assert store.remove(info.key) == found and held(root) == []
