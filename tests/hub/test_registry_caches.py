"""The nodes' model caches on the hub (issue 17): the agents' reports read and bounded, what the
fetch task carries (presigned URLs from S3, none from the embedded store), which nodes a switch
must fetch on, where a model is listed as cached, and placement preferring a node that holds
the model's entry; then, with a real hub and agent, a switch that fetches the model first, the
caches listed, uncached and cached again, learnt again from a hello, kept while a node is down."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
import signal
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from gpufleet.v1 import agent_link_pb2 as pb
from gpufleet.v1 import (
    hub_pb2,
    hub_pb2_grpc,
    models_pb2,
    models_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
)
from hub.gateway import placement
from hub.link import caches_reported
from hub.models import convert
from hub.models.schema import Model, RegistrySource
from hub.registry.caches import CachedView, NodeCaches
from hub.registry.convert_caches import (
    MAX_CACHES,
    TooManyCaches,
    cached_from_proto,
    cached_to_proto,
    caches_from_proto,
)
from hub.registry.entries import Entry, Hasher
from hub.registry.kinds import Fetching, fetch_task, holds, runs_from
from hub.registry.local import LocalStore
from hub.registry.s3 import S3Store
from tests.conftest import need
from tests.support import podman
from tests.support.procs import Cluster, Daemon, free_port, wait_until
from tests.support.s3server import S3Server, start_or_skip

REVISION = "0123456789abcdef0123456789abcdef01234567"


def reported(entry: str, state: str = "complete", verified: bool = True,
             revision: str = REVISION) -> pb.CachedEntry:  # fmt: skip
    return pb.CachedEntry(entry=entry, revision=revision, size=10, verified=verified,
                          state=state, path=f"/var/lib/gpufleet/models/files/{entry}",
                          layout="files")  # fmt: skip


def test_a_cache_report_converts_and_leaves_out_what_the_hub_cannot_use() -> None:
    good = reported("qwen")
    view = cached_from_proto(good)
    assert view == CachedView("qwen", REVISION, 10, True, "complete",
                              "/var/lib/gpufleet/models/files/qwen", "files", "")  # fmt: skip
    assert cached_to_proto(view) == good
    odd = [reported("Not_A_Label"), reported("q2", state="exploded"),
           pb.CachedEntry(entry="q3", state="partial", layout="zip")]  # fmt: skip
    found = caches_from_proto([good, *odd, reported("qwen", state="partial")])
    assert [(v.entry, v.state) for v in found] == [("qwen", "complete")]  # the first of a name
    with pytest.raises(TooManyCaches, match=f"at most {MAX_CACHES}"):
        caches_from_proto([reported(f"e{i}") for i in range(MAX_CACHES + 1)])


def test_the_link_keeps_the_first_entries_of_an_oversized_report(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="hub.link"):
        found = caches_reported("gpu-a", [reported(f"e{i}") for i in range(MAX_CACHES + 9)])
    assert found is not None and len(found) == MAX_CACHES
    assert "node gpu-a" in caplog.text and f"keeping the first {MAX_CACHES}" in caplog.text


def view(entry: str, state: str = "complete", verified: bool = True,
         revision: str = REVISION) -> CachedView:  # fmt: skip
    return CachedView(entry, revision, 10, verified, state, f"/m/files/{entry}")


def caches_of(held: dict[str, list[CachedView]]) -> NodeCaches:
    caches = NodeCaches()
    for node, views in held.items():
        caches.replace(node, views)
    return caches


def entry_of(name: str = "qwen", data: bytes = b"weights") -> Entry:
    hasher = Hasher(chunk_size=4)
    hasher.update(data)
    return Entry(name, "import", REVISION, files=(hasher.file("tiny.gguf"),), state="ready",
                 chunk_size=4)  # fmt: skip


def test_a_switch_fetches_where_the_entry_is_not_complete_verified_at_its_revision() -> None:
    caches = caches_of({
        "a": [view("qwen")],
        "b": [view("qwen", state="partial", verified=False)],
        "c": [view("qwen", verified=False)],
        "d": [view("qwen", revision="f" * 40)],
        "e": [view("other")],
    })  # fmt: skip
    entry = entry_of()
    assert holds(caches, "a", entry)
    fetching = Fetching(LocalStore(Path("/nonexistent")), caches)
    assert fetching.lacking(entry, ["a", "b", "c", "d", "e", "f"]) == ["b", "c", "d", "e", "f"]


def test_a_node_that_cached_fewer_files_of_the_same_commit_does_not_hold_the_entry() -> None:
    entry = entry_of(data=b"0123456789")  # 10 bytes
    fewer = CachedView("qwen", REVISION, 4, True, "complete", "/m/hf")  # a smaller --include
    caches = caches_of({"whole": [view("qwen")], "fewer": [fewer]})
    assert holds(caches, "whole", entry)
    assert not holds(caches, "fewer", entry)
    fetching = Fetching(LocalStore(Path("/nonexistent")), caches)
    assert fetching.lacking(entry, ["whole", "fewer"]) == ["fewer"]


def test_the_fetch_task_carries_the_hashes_and_no_url_from_the_embedded_store(
    tmp_path: Path,
) -> None:
    entry = entry_of(data=b"0123456789")
    task = fetch_task(entry, LocalStore(tmp_path))
    assert (task.entry, task.revision, task.layout, task.chunk_size) == ("qwen", REVISION,
                                                                          "files", 4)  # fmt: skip
    [file] = task.files
    assert (file.path, file.size, file.url) == ("tiny.gguf", 10, "")  # through the hub
    assert file.sha256 == entry.files[0].sha256 and len(file.chunks) == 3


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    server = start_or_skip()
    server.apply(monkeypatch)
    yield server
    server.stop()


def test_the_fetch_task_presigns_each_file_on_s3(s3: S3Server, tmp_path: Path) -> None:
    entry = entry_of(data=b"0123456789")
    store = S3Store.from_spec(s3.spec("reg"))
    source = tmp_path / "tiny.gguf"
    source.write_bytes(b"0123456789")
    asyncio.run(store.put_file(entry.key("tiny.gguf"), source))
    [file] = fetch_task(entry, store).files
    ranged = urllib.request.Request(file.url, headers={"Range": "bytes=4-"})
    with urllib.request.urlopen(ranged, timeout=10) as answer:  # what the agent GETs
        assert answer.read() == b"456789"


def test_where_a_model_is_cached_says_why_a_node_would_still_fetch() -> None:
    caches = caches_of({
        "a": [view("qwen")],
        "b": [view("qwen", state="partial", verified=False)],
        "c": [view("qwen", verified=False)],
        "d": [view("qwen", revision="f" * 40)],
        "e": [view("qwen")],
    })  # fmt: skip
    found = convert.cached_on(caches.holders("qwen"), REVISION, lambda node: node != "e")
    assert found == ["a", "b (partial)", "c (unverified)", "d (old revision)", "e (down)"]
    assert convert.cached_on(caches.holders("none"), REVISION, lambda _node: True) == []


def test_an_uncache_leaves_a_node_that_runs_a_model_from_the_entry() -> None:
    assert runs_from("model-chat", {"chat", "coder"}) == "chat"
    assert runs_from("model-other", {"chat"}) == "" and runs_from("", {"chat"}) == ""
    assert runs_from("chat", {"chat"}) == ""  # a configuration, not a model deployment


def place(node: str, free_mb: int, cached: bool = False) -> placement.Place:
    return placement.Place(node, True, "", "", 1, free_mb, cached)


def test_placement_prefers_a_node_whose_cache_holds_the_model() -> None:
    places = [place("big", 80_000), place("small", 24_000, cached=True), place("mid", 40_000)]
    assert placement.pick("chat", 1, None, places) == "small"
    # Among cached nodes (or none), the most free memory, then the name.
    places = [place("b", 40_000, True), place("a", 40_000, True), place("big", 80_000)]
    assert placement.pick("chat", 1, None, places) == "a"
    assert placement.pick("chat", 1, None, [place("big", 80_000), place("mid", 40_000)]) == "big"
    # A cached node that cannot take the model is no choice at all.
    busy = placement.Place("small", True, "model-other", "", 1, 24_000, True)
    assert placement.pick("chat", 1, None, [busy, place("big", 80_000)]) == "big"


def test_the_nodes_placement_counts_as_cached_hold_the_entry_complete() -> None:
    caches = caches_of({"a": [view("qwen")], "b": [view("qwen", state="fetching",
                                                         verified=False)]})  # fmt: skip
    model = Model("chat", RegistrySource("qwen"), "vllm", "chat")
    assert placement.cached_on(model, caches) == frozenset({"a"})
    other = Model("other", RegistrySource("none"), "vllm", "other")
    assert placement.cached_on(other, caches) == frozenset()


# Real processes: a hub with a models directory, one agent that runs llama-cpp-python from
# this interpreter's environment on the cpu, a tiny GGUF imported into the embedded registry.
TINY_MODEL = """\
name: tiny
engine: llama-cpp
source: {registry: tiny}
llama_cpp: {backend: cpu, n_ctx: 256}
"""
OP_TIMEOUT_S = 120.0


def llama_servers(port: int) -> list[int]:
    """Pids of llama.cpp servers started for `port` (they outlive their agent by design)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[1:3] == [b"-m", b"llama_cpp.server"] and f"--port={port}".encode() in argv:
            found.append(int(proc.name))
    return found


@dataclass
class Fleet:
    cluster: Cluster
    node: str
    agent: Daemon
    port: int

    def call(self, stub: Callable[[grpc.Channel], Any], method: str, request: Any) -> Any:
        with self.cluster.hub.channel() as channel:
            return getattr(stub(channel), method)(request, timeout=30)

    def refused(self, stub: Callable[[grpc.Channel], Any], method: str,
                request: Any) -> tuple[grpc.StatusCode, str]:  # fmt: skip
        with pytest.raises(grpc.RpcError) as caught:
            self.call(stub, method, request)
        return caught.value.code(), caught.value.details() or ""

    def finished(self, operation_id: str) -> hub_pb2.Operation:
        def done() -> hub_pb2.Operation | None:
            found = self.call(
                hub_pb2_grpc.HubStub,
                "GetOperation",
                hub_pb2.GetOperationRequest(id=operation_id, with_events=True),
            )
            return found if found.status != "running" else None

        return wait_until(done, OP_TIMEOUT_S, f"operation {operation_id}", every=0.3)

    def caches(self) -> list[tuple[str, str, str, bool, bool]]:
        found = self.call(registry_pb2_grpc.RegistryStub, "ListCaches",
                          registry_pb2.ListCachesRequest())  # fmt: skip
        return [(c.node, c.entry, c.state, c.verified, c.connected) for c in found.caches]

    def cached_on(self) -> list[str]:
        found = self.call(models_pb2_grpc.ModelsStub, "GetModel",
                          models_pb2.GetModelRequest(name="tiny"))  # fmt: skip
        return list(found.model.cached_on)

    def targets(self) -> hub_pb2.Targets:
        return hub_pb2.Targets(nodes=[self.node])


def import_entry(fleet: Fleet, name: str, path: Path) -> None:
    data = path.read_bytes()
    start = registry_pb2.ImportStart(name=name, layout="files", files=[registry_pb2.ImportFileInfo(
        path=path.name, size=len(data), sha256=hashlib.sha256(data).hexdigest())])  # fmt: skip
    pieces = [registry_pb2.ImportChunk(start=start)] + [
        registry_pb2.ImportChunk(data=registry_pb2.ImportData(path=path.name,
                                                              data=data[i : i + (1 << 20)]))
        for i in range(0, len(data), 1 << 20)
    ]  # fmt: skip
    with fleet.cluster.hub.channel() as channel:
        reply = registry_pb2_grpc.RegistryStub(channel).Import(iter(pieces), timeout=60)
    assert reply.entry.state == "ready", reply


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    try:
        import llama_cpp.server  # noqa: F401

        from tests.support.tiny_gguf import write_tiny_gguf
    except ImportError as exc:
        need(f"the llama extra is missing ({exc.name}): pip install -e '.[llama]'")
        raise
    models = tmp_path / "models"
    models.mkdir()
    (models / "tiny.yaml").write_text(TINY_MODEL)
    (tmp_path / "configs").mkdir()
    cluster = Cluster(tmp_path, None, heartbeat=0.5, configs=tmp_path / "configs",
                      hub_args=("--models", str(models)))  # fmt: skip
    port = free_port()
    try:
        cluster.start_hub()
        node = f"c{secrets.token_hex(3)}"
        agent = cluster.agent(node, extra=["--gpu-probe", "none", "--llama-env",
                                           f"cpu={sys.prefix}"], env=podman.env())  # fmt: skip
        agent.start()
        cluster.wait_status({node: "ready"})
        found = Fleet(cluster, node, agent, port)
        import_entry(found, "tiny", write_tiny_gguf(tmp_path / "tiny.gguf", seed=3, name="tiny"))
        yield found
    finally:
        cluster.close()
        for pid in llama_servers(port):
            os.kill(pid, signal.SIGKILL)


def test_a_model_from_the_registry_is_fetched_by_its_switch_and_cached_on_the_node(
    fleet: Fleet,
) -> None:
    node, models, registry = fleet.node, models_pb2_grpc.ModelsStub, registry_pb2_grpc.RegistryStub
    assert fleet.caches() == [] and fleet.cached_on() == []
    switch = models_pb2.SwitchModelRequest(name="tiny", targets=fleet.targets(), port=fleet.port,
                                           no_fetch=True)  # fmt: skip
    code, line = fleet.refused(models, "SwitchModel", switch)
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert line == (f"model tiny: registry entry tiny is not in the model cache of {node} "
                    f"(--no-fetch): `hubctl models cache tiny --node {node}` first, or switch "
                    "without --no-fetch")  # fmt: skip

    switch.no_fetch = False
    operation = fleet.finished(fleet.call(models, "SwitchModel", switch).id)
    assert operation.status == "succeeded", operation
    steps = [(e.step, e.progress) for e in operation.events]
    # The fetch phase is visible: the hub's step, then the agent's own progress, then the start.
    assert ("fetch", False) in steps and ("fetch", True) in steps
    assert steps.index(("fetch", False)) < steps.index(("start", False))
    with urllib.request.urlopen(f"http://127.0.0.1:{fleet.port}/v1/models", timeout=30) as got:
        assert b"tiny" in got.read()
    assert fleet.caches() == [(node, "tiny", "complete", True, True)]
    assert fleet.cached_on() == [node]

    code, line = fleet.refused(registry, "UncacheModel", registry_pb2.UncacheModelRequest(
        name="tiny", targets=fleet.targets()))  # fmt: skip
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert line == (f"model tiny runs on {node} from registry entry tiny: stop it first "
                    f"(`hubctl models stop tiny --node {node}`)")  # fmt: skip
    stop = models_pb2.StopModelRequest(name="tiny")
    assert fleet.finished(fleet.call(models, "StopModel", stop).id).status == "succeeded"

    uncache = registry_pb2.UncacheModelRequest(name="tiny", targets=fleet.targets())
    assert fleet.finished(fleet.call(registry, "UncacheModel", uncache).id).status == "succeeded"
    assert fleet.caches() == []
    cache = registry_pb2.CacheModelRequest(name="tiny", targets=fleet.targets())
    operation = fleet.finished(fleet.call(registry, "CacheModel", cache).id)
    assert operation.status == "succeeded" and operation.kind == "model-cache"
    assert any(e.progress and e.step == "fetch" for e in operation.events)
    assert fleet.caches() == [(node, "tiny", "complete", True, True)]

    # A hub that restarts learns the cache from the agent's hello again.
    fleet.cluster.hub.terminate()
    fleet.cluster.start_hub()
    wait_until(lambda: fleet.caches() or None, 30, "the agent's cache report in its hello")
    assert fleet.caches() == [(node, "tiny", "complete", True, True)]
    # A node that goes down keeps what it said last, flagged.
    fleet.agent.terminate()
    wait_until(lambda: fleet.caches()[0][4] is False or None, 30, "the node down")
    assert fleet.cached_on() == [f"{node} (down)"]
