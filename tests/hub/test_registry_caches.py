"""The nodes' model caches on the hub (issue 17): the agents' reports read and bounded, what the
fetch task carries (presigned URLs from S3, none from the embedded store), which nodes a switch
must fetch on, where a model is listed as cached, and placement preferring a node that holds
the model's entry."""

from __future__ import annotations

import asyncio
import logging
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpufleet.v1 import agent_link_pb2 as pb
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
