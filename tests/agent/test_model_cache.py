"""The node's model cache (issue 17): layouts the engines read (huggingface_hub offline finds a
fetched hf entry), resume after a cut, corrupt chunks and files, the space check, presigned URLs
against a real HTTP range server, removal refused while a project uses the entry."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path

import pytest
from aiohttp import web

from agent.cache.fetch import Fetcher, FetchError, FileSpec, Moved
from agent.cache.index import CachedEntry
from agent.cache.layout import FILES, HF, Place
from agent.cache.sources import SourceError, Wanted
from agent.cache.space import SpaceError, check_space, parse_size
from agent.cache.store import ModelCache
from agent.compose import Completed, Podman
from agent.link import AgentLink, Identity
from agent.main import task_kinds
from agent.probes import NoProbe
from agent.processes import Processes
from agent.projects import ProjectStore
from agent.tasks.context import TaskContext
from agent.tasks.runner import Registry
from gpufleet.policy import Policy, refusals
from gpufleet.v1 import agent_link_pb2 as pb
from gpufleet.v1 import types_pb2
from tests.agent.support import run_task

CHUNK = 64 * 1024
MIB = 1 << 20
REVISION = "0123456789abcdef0123456789abcdef01234567"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def spec_of(path: str, data: bytes, chunk: int = CHUNK, url: str = "") -> FileSpec:
    chunks = tuple(sha(data[i : i + chunk]) for i in range(0, len(data), chunk))
    return FileSpec(path, len(data), sha(data), chunks, url)


class Served:
    """A stand-in source at the process edge: serves bytes, may cut a stream after `cut`
    bytes, and corrupts chunk `bad` of a file `bad_times` times; records what it served."""

    def __init__(self, files: Mapping[str, bytes], chunk: int = CHUNK) -> None:
        self.files = dict(files)
        self.chunk = chunk
        self.cut: int | None = None
        self.bad: tuple[str, int] | None = None
        self.bad_times = 0
        self.served = 0
        self.asked: list[tuple[str, int, int]] = []

    async def read(self, wanted: Wanted) -> AsyncIterator[bytes]:
        self.asked.append((wanted.path, wanted.offset, wanted.length))
        data = bytearray(self.files[wanted.path][wanted.offset : wanted.offset + wanted.length])
        if self.bad is not None and self.bad[0] == wanted.path and self.bad_times > 0:
            at = self.bad[1] * self.chunk - wanted.offset
            if 0 <= at < len(data):
                data[at] ^= 0xFF
                self.bad_times -= 1
        for start in range(0, len(data), 10_000):
            piece = bytes(data[start : start + 10_000])
            if self.cut is not None and self.served + len(piece) > self.cut:
                piece = piece[: self.cut - self.served]
                self.served += len(piece)
                yield piece
                raise SourceError(f"{wanted.path}: connection reset")
            self.served += len(piece)
            yield piece


def blob(size: int, seed: int = 1) -> bytes:
    return (hashlib.sha256(str(seed).encode()).digest() * (size // 32 + 1))[:size]


def fetch(place: Place, source: Served, spec: FileSpec, chunk: int = CHUNK) -> Moved:
    moved = Moved()
    asyncio.run(Fetcher(place, source, chunk, moved).fetch(spec))
    return moved


# -- the fetcher's core -------------------------------------------------------------------


def test_a_file_is_fetched_checked_and_renamed_into_the_files_layout(tmp_path: Path) -> None:
    data = blob(5 * CHUNK + 123)
    place = Place(tmp_path, "tiny", REVISION, FILES)
    moved = fetch(place, Served({"sub/m.gguf": data}), spec_of("sub/m.gguf", data))
    assert (tmp_path / "files" / "tiny" / "sub" / "m.gguf").read_bytes() == data
    assert (moved.fetched, moved.resumed, moved.refetched) == (len(data), 0, 0)
    assert not place.part("sub/m.gguf").exists()


def test_a_cut_fetch_resumes_fetching_again_at_most_the_last_chunk(tmp_path: Path) -> None:
    data = blob(10 * CHUNK + 7)
    place = Place(tmp_path, "tiny", REVISION, FILES)
    source = Served({"m.gguf": data})
    source.cut = 4 * CHUNK + CHUNK // 2  # mid chunk 4
    with pytest.raises(FetchError, match=r"^m\.gguf: connection reset$"):
        fetch(place, source, spec_of("m.gguf", data))
    assert place.part("m.gguf").stat().st_size == 4 * CHUNK  # only checked chunks written
    source.cut = None
    moved = fetch(place, source, spec_of("m.gguf", data))
    assert (moved.resumed, moved.fetched) == (4 * CHUNK, len(data) - 4 * CHUNK)
    assert source.asked[-1] == ("m.gguf", 4 * CHUNK, len(data) - 4 * CHUNK)
    assert source.served - len(data) <= CHUNK  # bytes fetched twice: at most the last chunk
    assert (tmp_path / "files" / "tiny" / "m.gguf").read_bytes() == data


def test_a_corrupt_chunk_in_the_part_file_is_detected_and_fetched_again(tmp_path: Path) -> None:
    data = blob(6 * CHUNK)
    place = Place(tmp_path, "tiny", REVISION, FILES)
    part = place.part("m.gguf")
    part.parent.mkdir(parents=True)
    damaged = bytearray(data[: 4 * CHUNK])
    damaged[2 * CHUNK + 5] ^= 0x01
    part.write_bytes(bytes(damaged))
    source = Served({"m.gguf": data})
    moved = fetch(place, source, spec_of("m.gguf", data))
    assert (moved.resumed, moved.refetched, moved.fetched) == (2 * CHUNK, 1, 4 * CHUNK)
    assert source.asked == [("m.gguf", 2 * CHUNK, 4 * CHUNK)]
    assert (tmp_path / "files" / "tiny" / "m.gguf").read_bytes() == data


def test_a_chunk_that_arrives_corrupt_is_fetched_again_then_fails_naming_it(
    tmp_path: Path,
) -> None:
    data = blob(5 * CHUNK)
    place = Place(tmp_path, "tiny", REVISION, FILES)
    source = Served({"m.gguf": data})
    source.bad, source.bad_times = ("m.gguf", 3), 1
    moved = fetch(place, source, spec_of("m.gguf", data))
    assert moved.refetched == 1 and source.asked[-1] == ("m.gguf", 3 * CHUNK, 2 * CHUNK)
    assert (tmp_path / "files" / "tiny" / "m.gguf").read_bytes() == data
    other = Place(tmp_path, "other", REVISION, FILES)
    source.bad_times = 99
    with pytest.raises(FetchError) as failed:
        fetch(other, source, spec_of("m.gguf", data))
    assert str(failed.value).startswith("m.gguf: chunk 3 failed its sha256 3 times")
    assert not (tmp_path / "files" / "other" / "m.gguf").exists()
    assert other.part("m.gguf").stat().st_size == 3 * CHUNK  # kept for the next try


def test_a_file_without_a_chunk_list_is_checked_whole(tmp_path: Path) -> None:
    """Every chunk checked is the whole file checked (the hub hashes both from the same
    bytes); a file with no chunk list, an empty one, is checked by its sha256."""
    place = Place(tmp_path, "tiny", REVISION, FILES)
    source = Served({"empty.txt": b"", "m.gguf": blob(CHUNK)})
    fetch(place, source, spec_of("empty.txt", b""))
    assert (tmp_path / "files" / "tiny" / "empty.txt").read_bytes() == b""
    with pytest.raises(FetchError, match=r"^empty\.txt: sha256 .* does not match"):
        fetch(place, source, FileSpec("empty.txt", 0, sha(b"other"), ()))
    with pytest.raises(FetchError, match=r"^m\.gguf: the registry lists no chunk hashes"):
        fetch(place, source, FileSpec("m.gguf", CHUNK, sha(blob(CHUNK)), ()))
    assert source.asked == [] and not (tmp_path / "files" / "tiny" / "m.gguf").exists()


def test_a_part_file_holding_the_whole_file_is_placed_without_fetching(tmp_path: Path) -> None:
    """An agent killed after the last chunk but before the rename."""
    data = blob(3 * CHUNK + 11)
    place = Place(tmp_path, "tiny", REVISION, FILES)
    place.part("m.gguf").parent.mkdir(parents=True)
    place.part("m.gguf").write_bytes(data)
    source = Served({"m.gguf": data})
    moved = fetch(place, source, spec_of("m.gguf", data))
    assert (moved.resumed, moved.fetched, source.asked) == (len(data), 0, [])
    assert (tmp_path / "files" / "tiny" / "m.gguf").read_bytes() == data


def test_chunks_in_flight_behind_a_bad_one_are_not_written(tmp_path: Path) -> None:
    """The source runs ahead of the checks (one stream, several chunks at once): a bad chunk
    early on is fetched again from there, and what was sent behind it is written once, in
    order."""
    data = blob(12 * CHUNK + 5)
    place = Place(tmp_path, "tiny", REVISION, FILES)
    source = Served({"m.gguf": data})
    source.bad, source.bad_times = ("m.gguf", 1), 2
    moved = fetch(place, source, spec_of("m.gguf", data))
    assert moved.refetched == 2
    assert [offset for _, offset, _ in source.asked] == [0, CHUNK, CHUNK]
    assert (tmp_path / "files" / "tiny" / "m.gguf").read_bytes() == data


def test_space_is_refused_up_front_in_one_line(tmp_path: Path) -> None:
    assert (parse_size("1G"), parse_size("500M"), parse_size("2.5K")) == (1 << 30, 500 << 20, 2560)
    with pytest.raises(ValueError, match="expected a number with K, M, G or T"):
        parse_size("lots")
    check_space(tmp_path, 1000, 0)
    with pytest.raises(SpaceError) as refused:
        check_space(tmp_path, 10 * MIB, parse_size("1000T"), "tiny")
    line = str(refused.value)
    assert "\n" not in line and line.startswith(f"model cache {tmp_path}: tiny needs 10.0 MiB, ")
    assert line.endswith("keeping 1000.0 TiB: free space or `hubctl models uncache`")


# -- tasks through the agent's runner ----------------------------------------------------


def fetch_request(entry: str, layout: str, files: Mapping[str, bytes], repo: str = "",
                  url: str = "", task_id: str = "f") -> pb.TaskRequest:  # fmt: skip
    task = pb.FetchModel(entry=entry, revision=REVISION, layout=layout, repo=repo,
                         chunk_size=MIB)  # fmt: skip
    for path, data in files.items():
        spec = spec_of(path, data, MIB)
        task.files.append(pb.FetchFile(path=path, size=spec.size, sha256=spec.sha256,
                                       chunks=list(spec.chunks),
                                       url=f"{url}/{path}" if url else ""))  # fmt: skip
    return pb.TaskRequest(task_id=task_id, fetch_model=task)


def context(state: Path, cache: ModelCache, podman_ps: str = "[]") -> TaskContext:
    async def podman(argv: list[str], env: Mapping[str, str], limit_s: float) -> Completed:
        return Completed(0, podman_ps if "ps" in argv else "", "")

    store = ProjectStore(state, "none", Policy(model_cache=str(cache.root)),
                         {**os.environ, **cache.variables()})  # fmt: skip
    return TaskContext.create(store, Podman("gpu-a", run=podman), NoProbe(), cache.variables(),
                              processes=Processes(state, variables=cache.variables()))  # fmt: skip


def kinds(cache: ModelCache) -> Registry:
    return task_kinds(cache)


HF_FILES = {"config.json": b'{"model_type": "llama"}', "model.safetensors": blob(2 * MIB + 9)}


def test_an_hf_entry_is_found_by_huggingface_hub_offline(tmp_path: Path) -> None:
    from huggingface_hub import snapshot_download

    cache = ModelCache(tmp_path / "models", reserve=0, hub=Served(HF_FILES, MIB))
    ctx = context(tmp_path / "state", cache)
    request = fetch_request("tiny-hf", HF, HF_FILES, repo="org/tiny")
    result = run_task(ctx, request, kinds(cache))
    assert result.status == types_pb2.TASK_STATUS_CHANGED, result.message
    entry = result.cache.entry
    assert (entry.state, entry.verified, entry.layout, entry.repo, entry.revision) == (
        "complete", True, "hf", "org/tiny", REVISION)  # fmt: skip
    assert entry.path == str(cache.root / "hf") and entry.size == sum(map(len, HF_FILES.values()))
    assert result.cache.fetched_bytes == entry.size
    repo = cache.root / "hf" / "models--org--tiny"
    assert (repo / "refs" / "main").read_bytes() == REVISION.encode()  # no newline
    link = repo / "snapshots" / REVISION / "model.safetensors"
    assert os.readlink(link) == f"../../blobs/{sha(HF_FILES['model.safetensors'])}"
    found = snapshot_download("org/tiny", local_files_only=True, cache_dir=cache.root / "hf")
    assert Path(found) == repo / "snapshots" / REVISION
    assert (Path(found) / "config.json").read_bytes() == HF_FILES["config.json"]
    # Again: there, verified, nothing fetched.
    again = run_task(ctx, fetch_request("tiny-hf", HF, HF_FILES, "org/tiny", task_id="g"),
                     kinds(cache))  # fmt: skip
    assert again.status == types_pb2.TASK_STATUS_OK and again.message.endswith(
        "is cached, verified"
    )
    # The hello and a heartbeat report it; a heartbeat only when it changed.
    link_ = AgentLink("unused:1", Identity("gpu-a", "id"), NoProbe(), caches=cache)
    [reported] = asyncio.run(link_.hello()).caches
    assert (reported.entry, reported.state) == ("tiny-hf", "complete")
    assert not asyncio.run(link_.heartbeat(1)).HasField("caches")


def test_a_fetch_without_room_fails_at_once_and_fetches_nothing(tmp_path: Path) -> None:
    source = Served(HF_FILES, MIB)
    cache = ModelCache(tmp_path / "models", reserve=parse_size("1000T"), hub=source)
    result = run_task(context(tmp_path / "state", cache),
                      fetch_request("tiny", FILES, {"m.gguf": blob(3 * MIB)}),
                      kinds(cache))  # fmt: skip
    assert result.status == types_pb2.TASK_STATUS_FAILED
    assert "\n" not in result.message and "needs 3.0 MiB" in result.message
    assert result.message.endswith("free space or `hubctl models uncache`")
    assert source.asked == [] and not (tmp_path / "models" / "entries").exists()


@pytest.fixture
def range_server(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """A real HTTP server answering ranged GETs (aiohttp's FileResponse), as presigned URLs
    on an object store do; records the Range headers."""
    root = tmp_path / "bucket"
    root.mkdir()
    ranges: list[str] = []

    async def serve(request: web.Request) -> web.StreamResponse:
        ranges.append(request.headers.get("Range", ""))
        path = root / request.match_info["path"]
        if not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path)

    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_get("/{path:.*}", serve)
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    site = web.SockSite(runner, sock)
    loop.run_until_complete(site.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", ranges
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def test_presigned_urls_resume_with_ranged_gets(
    tmp_path: Path, range_server: tuple[str, list[str]]
) -> None:
    url, ranges = range_server
    data = blob(3 * MIB + 5)
    (tmp_path / "bucket" / "m.gguf").write_bytes(data)
    cache = ModelCache(tmp_path / "models", reserve=0, hub=None)
    place = Place(cache.root, "tiny", REVISION, FILES)
    place.part("m.gguf").parent.mkdir(parents=True)
    place.part("m.gguf").write_bytes(data[: MIB + 100])  # a cut fetch: one chunk and a bit
    result = run_task(context(tmp_path / "state", cache),
                      fetch_request("tiny", FILES, {"m.gguf": data}, url=url),
                      kinds(cache))  # fmt: skip
    assert result.status == types_pb2.TASK_STATUS_CHANGED, result.message
    assert (result.cache.resumed_bytes, result.cache.fetched_bytes) == (MIB, len(data) - MIB)
    assert ranges == [f"bytes={MIB}-{len(data) - 1}"]
    assert (cache.root / "files" / "tiny" / "m.gguf").read_bytes() == data
    missing = run_task(context(tmp_path / "state", cache),
                       fetch_request("gone", FILES, {"x.gguf": b"x"}, url=url),
                       kinds(cache))  # fmt: skip
    assert missing.status == types_pb2.TASK_STATUS_FAILED
    assert missing.message == "gone@0123456789ab: x.gguf: the object store answered 404 Not Found"
    assert missing.cache.entry.state == "partial"


def test_removal_is_refused_while_a_running_project_binds_the_entry(tmp_path: Path) -> None:
    cache = ModelCache(tmp_path / "models", reserve=0, hub=Served(HF_FILES, MIB))
    running = json.dumps([{"Id": "c1", "State": "running",
                           "Labels": {"com.docker.compose.service": "vllm"}}])  # fmt: skip
    ctx = context(tmp_path / "state", cache, running)
    fetched = run_task(ctx, fetch_request("tiny-hf", HF, HF_FILES, "org/tiny"),
                       kinds(cache))  # fmt: skip
    assert fetched.status == types_pb2.TASK_STATUS_CHANGED, fetched.message
    compose = ("services:\n  vllm:\n    image: vllm\n    command: --model org/tiny\n"
               "    volumes: ['${GPUFLEET_MODEL_CACHE}/hf:/models-cache:ro']\n")  # fmt: skip
    ctx.store.write("chat", compose, sha(compose.encode()))  # the policy allows the :ro bind
    remove = pb.TaskRequest(task_id="r", remove_model_cache=pb.RemoveModelCache(entry="tiny-hf"))
    refused = run_task(ctx, remove, kinds(cache))
    assert refused.status == types_pb2.TASK_STATUS_FAILED
    assert refused.message == "tiny-hf is in use by chat: stop it first"
    assert (cache.root / "hf" / "models--org--tiny").is_dir()
    idle = context(tmp_path / "state", cache)  # nothing runs any more
    removed = run_task(idle, remove, kinds(cache))
    assert removed.status == types_pb2.TASK_STATUS_CHANGED, removed.message
    assert removed.cache.entry.state == "" and cache.index.records() == []
    assert not (cache.root / "hf" / "models--org--tiny").exists()
    assert not list(cache.root.glob(".removing-*"))
    again = run_task(idle, pb.TaskRequest(task_id="r2", remove_model_cache=pb.RemoveModelCache(
        entry="tiny-hf")), kinds(cache))  # fmt: skip
    assert again.status == types_pb2.TASK_STATUS_OK


def test_the_policy_allows_the_cache_read_only_and_nothing_else(tmp_path: Path) -> None:
    root = tmp_path / "models"
    policy = Policy(model_cache=str(root))

    def refused(volume: str, env: Mapping[str, str] | None) -> list[str]:
        document = {"services": {"s": {"image": "x", "volumes": [volume]}}}
        return [r.line("agent.yaml") for r in refusals(document, policy, env)]

    env = {"GPUFLEET_MODEL_CACHE": str(root)}
    assert refused("${GPUFLEET_MODEL_CACHE}/hf:/models-cache:ro", env) == []
    assert refused("${GPUFLEET_MODEL_CACHE}:/c:ro,z", env) == []
    assert refused("${GPUFLEET_MODEL_CACHE}/hf:/models-cache:ro", None) == []  # the hub
    assert refused("${GPUFLEET_MODEL_CACHE}/hf:/models-cache", env) == [
        "service s: a writable bind mount of the model cache ${GPUFLEET_MODEL_CACHE}/hf is not "
        "allowed on this host: mount it read-only (:ro)"
    ]
    assert refused(f"{root}/../etc:/x:ro", env) != []  # outside the root
    assert refused(f"{tmp_path}:/x:ro", env) != []


def test_process_specs_expand_the_cache_variable_alone(tmp_path: Path) -> None:
    processes = Processes(tmp_path, variables={"GPUFLEET_MODEL_CACHE": "/c"})
    assert processes.expand_text("--model=${GPUFLEET_MODEL_CACHE}/files/t/m.gguf ${HOME}") == (
        "--model=/c/files/t/m.gguf ${HOME}")  # fmt: skip


def test_what_uses_an_entry_and_what_an_agent_restart_leaves(tmp_path: Path) -> None:
    cache = ModelCache(tmp_path / "models")
    root = cache.root
    files = CachedEntry("tiny", REVISION, FILES)
    hf = CachedEntry("tiny-hf", REVISION, HF, "org/tiny")
    assert cache.uses(files, [f"--model={root}/files/tiny/m.gguf"])
    assert not cache.uses(files, [f"--model={root}/files/tiny2/m.gguf"])
    assert cache.uses(files, [f"- {root}:/cache:ro"])  # the whole cache
    assert cache.uses(hf, [f"- {root}/hf:/models-cache:ro\ncommand: --model org/tiny"])
    assert not cache.uses(hf, [f"- {root}/hf:/models-cache:ro\ncommand: --model org/other"])
    assert cache.uses(hf, [f"{root}/hf/models--org--tiny/snapshots/x"])
    # A fetch the earlier agent left running is partial now; a half-done removal finishes.
    cache.index.write(files.with_(state="fetching"))
    (root / ".removing-tiny-0").mkdir()
    assert cache.recover() == ["tiny"]
    assert cache.index.read("tiny").state == "partial"  # type: ignore[union-attr]
    assert not (root / ".removing-tiny-0").exists()
    link = AgentLink("unused:1", Identity("gpu-a", "id"), NoProbe(), caches=cache)
    assert [e.state for e in asyncio.run(link.hello()).caches] == ["partial"]
    cache.index.remove("tiny")
    beat = asyncio.run(link.heartbeat(1))
    assert beat.HasField("caches") and list(beat.caches.caches) == []


def test_presigned_urls_of_a_real_s3_server(tmp_path: Path) -> None:
    """moto's S3 server process: SigV4 presigned GETs with a Range resume a cut fetch."""
    from tests.support.s3server import start_or_skip

    server = start_or_skip()
    try:
        client = server.client()
        bucket = server.fresh_bucket()
        data = blob(2 * MIB + 77, seed=5)
        client.put_object(Bucket=bucket, Key=f"tiny/{REVISION}/m.gguf", Body=data)
        url = client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": f"tiny/{REVISION}/m.gguf"},
            ExpiresIn=600,
        )  # fmt: skip
        cache = ModelCache(tmp_path / "models", reserve=0, hub=None)
        place = Place(cache.root, "tiny", REVISION, FILES)
        place.part("m.gguf").parent.mkdir(parents=True)
        place.part("m.gguf").write_bytes(data[: MIB + 9])
        request = fetch_request("tiny", FILES, {"m.gguf": data})
        request.fetch_model.files[0].url = url
        result = run_task(context(tmp_path / "state", cache), request, kinds(cache))
        assert result.status == types_pb2.TASK_STATUS_CHANGED, result.message
        assert (result.cache.resumed_bytes, result.cache.fetched_bytes) == (MIB, len(data) - MIB)
        assert (cache.root / "files" / "tiny" / "m.gguf").read_bytes() == data
    finally:
        server.stop()
