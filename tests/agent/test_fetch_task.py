"""fetch_model through the agent's task runner: its progress phases, a cancel that keeps the
part files for the next fetch to resume, and the hub's RegistryFetch.Download as the source
(a real grpc.aio server with a stand-in servicer)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import grpc

from agent.cache.sources import HubSource, Wanted
from agent.cache.store import ModelCache
from agent.compose import Completed, Podman
from agent.link import AgentLink, Identity
from agent.main import task_kinds
from agent.probes import NoProbe
from agent.projects import ProjectStore
from agent.tasks.context import TaskContext
from agent.tasks.runner import TaskRunner
from gpufleet.v1 import agent_link_pb2 as pb
from gpufleet.v1 import registry_pb2 as rpb
from gpufleet.v1 import registry_pb2_grpc, types_pb2
from hub.ops.remote import RemoteAgent
from hub.server import HubConfig, HubServer
from tests.agent.support import answer

MIB = 1 << 20
REVISION = "a" * 40


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def blob(size: int) -> bytes:
    return (hashlib.sha256(b"x").digest() * (size // 32 + 1))[:size]


def request(entry: str, files: Mapping[str, bytes], task_id: str) -> pb.TaskRequest:
    task = pb.FetchModel(entry=entry, revision=REVISION, layout="files", chunk_size=MIB)
    for path, data in files.items():
        chunks = [sha(data[i : i + MIB]) for i in range(0, len(data), MIB)]
        task.files.append(pb.FetchFile(path=path, size=len(data), sha256=sha(data),
                                       chunks=chunks))  # fmt: skip
    return pb.TaskRequest(task_id=task_id, fetch_model=task)


async def nothing_runs(argv: list[str], env: Mapping[str, str], limit_s: float) -> Completed:
    return Completed(0, "[]", "")


def runner(state: Path, cache: ModelCache) -> TaskRunner:
    context = TaskContext.create(ProjectStore(state), Podman("gpu-a", run=nothing_runs),
                                 NoProbe(), {})  # fmt: skip
    return TaskRunner(task_kinds(cache), context)


class Gate:
    """A source that serves `before` bytes, then waits until the test lets it go on."""

    def __init__(self, data: bytes, before: int) -> None:
        self.data, self.before = data, before
        self.waiting = asyncio.Event()
        self.go_on = asyncio.Event()

    async def read(self, wanted: Wanted) -> AsyncIterator[bytes]:
        end = wanted.offset + wanted.length
        for start in range(wanted.offset, end, 256 * 1024):
            if start >= self.before:
                self.waiting.set()
                await self.go_on.wait()
            yield self.data[start : min(start + 256 * 1024, end)]


def events(sent: list[pb.AgentMessage]) -> list[tuple[str, str, float]]:
    return [(m.task_event.progress.phase, m.task_event.progress.message,
             m.task_event.progress.percent) for m in sent if m.HasField("task_event")]  # fmt: skip


def test_progress_goes_check_fetch_verify_and_a_cancel_keeps_the_part(tmp_path: Path) -> None:
    data = blob(4 * MIB + 3)

    async def scenario() -> None:
        gate = Gate(data, 2 * MIB + 100)
        cache = ModelCache(tmp_path / "models", reserve=0, hub=gate)
        tasks = runner(tmp_path / "state", cache)
        sent: list[pb.AgentMessage] = []
        tasks.attach(sent.append)
        tasks.submit(request("tiny", {"m.gguf": data}, "t1"))
        await asyncio.wait_for(gate.waiting.wait(), 10)
        assert cache.index.read("tiny") is not None
        assert cache.index.read("tiny").state == "fetching"  # type: ignore[union-attr]
        tasks.cancel("t1")
        for _ in range(200):
            if any(m.HasField("task_result") for m in sent):
                break
            await asyncio.sleep(0.01)
        [result] = [m.task_result for m in sent if m.HasField("task_result")]
        assert result.status == types_pb2.TASK_STATUS_CANCELLED
        assert result.message.startswith("cancelled by the hub during fetch: ")
        assert result.cache.entry.state == "partial"
        part = cache.root / ".partial" / "tiny" / REVISION / "m.gguf"
        assert part.stat().st_size == 2 * MIB  # the checked chunks stay
        assert cache.active == set()

        gate.go_on.set()
        sent = await answer(tasks, request("tiny", {"m.gguf": data}, "t2"))
        done = sent[-1].task_result
        assert done.status == types_pb2.TASK_STATUS_CHANGED, done.message
        assert (done.cache.resumed_bytes, done.cache.fetched_bytes) == (
            2 * MIB,
            len(data) - 2 * MIB,
        )
        phases = [phase for phase, _, _ in events(sent)]
        assert phases[0] == "check" and "fetch" in phases and phases[-1] == "verify"
        fetching = [(message, percent) for phase, message, percent in events(sent)
                    if phase == "fetch"]  # fmt: skip
        assert fetching[-1][0].startswith("4.0 MiB/4.0 MiB (100%), ")
        assert fetching[-1][0].endswith(" MiB/s") and fetching[-1][1] == 100.0
        assert (cache.root / "files" / "tiny" / "m.gguf").read_bytes() == data
        assert not (cache.root / ".partial" / "tiny").exists()
        assert cache.index.read("tiny").verified  # type: ignore[union-attr]

    asyncio.run(scenario())


class Registry(registry_pb2_grpc.RegistryFetchServicer):  # type: ignore[misc]
    """A stand-in for the hub's servicer: serves bytes by (entry, revision, path)."""

    def __init__(self, files: Mapping[tuple[str, str, str], bytes]) -> None:
        self.files = files
        self.asked: list[tuple[str, int, int]] = []

    async def Download(self, request: rpb.DownloadRequest,
                       context: grpc.aio.ServicerContext[rpb.DownloadRequest, rpb.DownloadChunk],
                       ) -> AsyncIterator[rpb.DownloadChunk]:  # fmt: skip
        self.asked.append((request.path, request.offset, request.length))
        data = self.files.get((request.entry, request.revision, request.path))
        if data is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no file {request.path}")
            return
        end = request.offset + request.length if request.length else len(data)
        for start in range(request.offset, end, 64 * 1024):
            yield rpb.DownloadChunk(data=data[start : min(start + 64 * 1024, end)])


def test_files_come_through_the_hubs_registry_fetch(tmp_path: Path) -> None:
    data = blob(2 * MIB + 1)

    async def scenario() -> None:
        servicer = Registry({("tiny", REVISION, "m.gguf"): data})
        server = grpc.aio.server()
        registry_pb2_grpc.add_RegistryFetchServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()

        def channel() -> AbstractAsyncContextManager[grpc.aio.Channel]:
            return grpc.aio.insecure_channel(f"127.0.0.1:{port}")

        try:
            cache = ModelCache(tmp_path / "models", reserve=0, hub=HubSource(channel))
            tasks = runner(tmp_path / "state", cache)
            done = (await answer(tasks, request("tiny", {"m.gguf": data}, "t1")))[-1]
            assert done.task_result.status == types_pb2.TASK_STATUS_CHANGED
            assert servicer.asked == [("m.gguf", 0, len(data))]
            assert (cache.root / "files" / "tiny" / "m.gguf").read_bytes() == data
            missing = (await answer(tasks, request("gone", {"x.gguf": b"x"}, "t2")))[-1]
            assert missing.task_result.status == types_pb2.TASK_STATUS_FAILED
            assert missing.task_result.message == (
                f"gone@{REVISION[:12]}: x.gguf: the hub: NOT_FOUND: no file x.gguf"
            )
        finally:
            await server.stop(None)

    asyncio.run(scenario())


class Served:
    """Bytes by path, from memory (the source at the process edge)."""

    def __init__(self, files: Mapping[str, bytes]) -> None:
        self.files = files

    async def read(self, wanted: Wanted) -> AsyncIterator[bytes]:
        yield self.files[wanted.path][wanted.offset : wanted.offset + wanted.length]


def test_the_hub_runs_both_tasks_as_steps_and_learns_the_cache(tmp_path: Path) -> None:
    """RemoteAgent.fetch_model and remove_model_cache against a real in-process hub and a real
    agent link: the steps' results, the entry as a CachedView, the node's cache report."""
    data = blob(MIB + 10)

    async def scenario() -> None:
        server = HubServer(HubConfig("127.0.0.1:0", tmp_path / "hub", heartbeat_interval=0.2,
                                     insecure=True))  # fmt: skip
        await server.start()
        cache = ModelCache(tmp_path / "models", reserve=0, hub=Served({"m.gguf": data}))
        context = TaskContext.create(ProjectStore(tmp_path / "state"),
                                     Podman("gpu-a", run=nothing_runs), NoProbe(), {})  # fmt: skip
        link = AgentLink(f"127.0.0.1:{server.port}", Identity("gpu-a", "id-a"), NoProbe(),
                         tasks=TaskRunner(task_kinds(cache), context), caches=cache)  # fmt: skip
        stop = asyncio.Event()
        running = asyncio.create_task(link.run(stop))
        try:
            await asyncio.wait_for(link.connected.wait(), 10)
            session = server.registry.get("gpu-a")
            assert session is not None
            agent = RemoteAgent(session, "op-1")
            task = request("tiny", {"m.gguf": data}, "").fetch_model
            step, view = await agent.fetch_model(task, check=True)
            assert (step.status, view) == ("changed", None)
            assert step.message == f"would fetch tiny@{REVISION[:12]}: 1.0 MiB"
            step, view = await agent.fetch_model(task, check=False)
            assert step.status == "changed", step.message
            assert view is not None and view.usable and view.revision == REVISION
            assert view.path == str(cache.root / "files" / "tiny")
            for _ in range(100):  # the next heartbeat tells the hub's view too
                held = server.caches.held("gpu-a", "tiny")
                if held is not None and held.usable:
                    break
                await asyncio.sleep(0.05)
            assert held is not None and held.usable
            removed = await agent.remove_model_cache("tiny")
            assert (removed.status, removed.message) == (
                "changed",
                "removed tiny from the model cache",
            )
        finally:
            stop.set()
            await asyncio.wait_for(running, 5)
            await server.stop(grace=1)

    asyncio.run(scenario())
