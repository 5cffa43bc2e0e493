"""The node's model cache when entries share an hf repository (issue 17 review): refs/main
serves one revision per repository, so a second entry of a cached repository is refused; a
removal keeps what another record uses and frees the blobs no snapshot uses; a removal and a
fetch of one entry arriving together cannot both go on."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

from agent.cache.fetch import CacheResult
from agent.cache.index import COMPLETE, CachedEntry, CachedFile
from agent.cache.layout import FILES, HF
from agent.cache.store import ModelCache
from agent.compose import Completed, Podman
from agent.probes import NoProbe
from agent.processes import Processes
from agent.projects import ProjectStore
from agent.tasks.context import TaskContext
from agent.tasks.fetch_model import FetchModel
from agent.tasks.outcome import Outcome, Status
from agent.tasks.remove_model_cache import RemoveModelCache, RemoveSpec
from gpufleet.policy import Policy
from gpufleet.v1 import agent_link_pb2 as pb
from gpufleet.v1 import types_pb2
from tests.agent.support import run_task

MIB = 1 << 20
ONE = "1111111111111111111111111111111111111111"
TWO = "2222222222222222222222222222222222222222"
CONFIG = b'{"model_type": "llama"}'


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hold(cache: ModelCache, entry: str, revision: str, files: Mapping[str, bytes],
         layout: str = HF, repo: str = "org/tiny") -> CachedEntry:  # fmt: skip
    """An entry as a finished fetch leaves it: bytes moved into place through the layout's
    own code, refs/main written, the index complete and verified."""
    place = CachedEntry(entry, revision, layout, repo).place(cache.root)
    for path, data in files.items():
        part = place.part(path)
        part.parent.mkdir(parents=True, exist_ok=True)
        part.write_bytes(data)
        place.place(part, path, sha(data))
    place.write_ref()
    listed = tuple(CachedFile(p, len(d), sha(d)) for p, d in files.items())
    record = CachedEntry(entry, revision, layout, repo, COMPLETE, True,
                         sum(map(len, files.values())), str(place.engine_path),
                         listed)  # fmt: skip
    return cache.index.write(record)


def context(state: Path, cache: ModelCache, podman_s: float = 0.0) -> TaskContext:
    """A task context whose podman answers `ps` (nothing running) after podman_s seconds."""

    async def podman(argv: list[str], env: Mapping[str, str], limit_s: float) -> Completed:
        await asyncio.sleep(podman_s)
        return Completed(0, "[]" if "ps" in argv else "", "")

    store = ProjectStore(state, "none", Policy(model_cache=str(cache.root)),
                         {**os.environ, **cache.variables()})  # fmt: skip
    return TaskContext.create(store, Podman("gpu-a", run=podman), NoProbe(), cache.variables(),
                              processes=Processes(state, variables=cache.variables()),
                              node_name="gpu-a")  # fmt: skip


def remove(ctx: TaskContext, cache: ModelCache, entry: str) -> pb.TaskResult:
    request = pb.TaskRequest(task_id=f"rm-{entry}",
                             remove_model_cache=pb.RemoveModelCache(entry=entry))  # fmt: skip
    return run_task(ctx, request, {"remove_model_cache": RemoveModelCache(cache)})


def test_a_second_entry_of_a_cached_repository_is_refused_in_one_line(tmp_path: Path) -> None:
    cache = ModelCache(tmp_path / "models", reserve=0)
    hold(cache, "tiny-import", ONE, {"config.json": CONFIG})
    line = cache.shared_repo("tiny-pull", HF, "org/tiny", "gpu-a")
    assert line == ("tiny-pull: repository org/tiny is cached on this node as tiny-import (one "
                    "revision per repository): uncache tiny-import first: hubctl models uncache "
                    "tiny-import --node gpu-a")  # fmt: skip
    # A new revision of the same entry replaces it; other repositories and files entries go on.
    assert cache.shared_repo("tiny-import", HF, "org/tiny", "gpu-a") is None
    assert cache.shared_repo("tiny-pull", HF, "org/other", "gpu-a") is None
    assert cache.shared_repo("tiny-pull", FILES, "", "gpu-a") is None
    assert (cache.root / "hf" / "models--org--tiny" / "refs" / "main").read_text() == ONE


def test_removing_one_of_two_records_of_one_snapshot_keeps_it(tmp_path: Path) -> None:
    from huggingface_hub import snapshot_download

    cache = ModelCache(tmp_path / "models", reserve=0)
    weights = os.urandom(3000)
    files = {"config.json": CONFIG, "model.safetensors": weights}
    hold(cache, "tiny-import", ONE, files)  # as a cache from before the refusal holds them
    hold(cache, "tiny-pull", ONE, files)
    removed = remove(context(tmp_path / "state", cache), cache, "tiny-import")
    assert removed.status == types_pb2.TASK_STATUS_CHANGED, removed.message
    repo = cache.root / "hf" / "models--org--tiny"
    assert (repo / "blobs" / sha(weights)).read_bytes() == weights
    found = snapshot_download("org/tiny", local_files_only=True, cache_dir=cache.root / "hf")
    assert (Path(found) / "model.safetensors").read_bytes() == weights
    assert [r.entry for r in cache.index.records()] == ["tiny-pull"]
    assert not list(cache.root.glob(".removing-*"))


def test_removing_a_revision_frees_its_blobs_and_refs_name_the_one_kept(tmp_path: Path) -> None:
    from huggingface_hub import snapshot_download

    cache = ModelCache(tmp_path / "models", reserve=0)
    old, new = os.urandom(2000), os.urandom(2500)
    hold(cache, "tiny-import", ONE, {"config.json": CONFIG, "model.safetensors": old})
    hold(cache, "tiny-pull", TWO, {"config.json": CONFIG, "model.safetensors": new})
    repo = cache.root / "hf" / "models--org--tiny"
    assert (repo / "refs" / "main").read_text() == TWO
    removed = remove(context(tmp_path / "state", cache), cache, "tiny-pull")
    assert removed.status == types_pb2.TASK_STATUS_CHANGED, removed.message
    assert sorted(b.name for b in (repo / "blobs").iterdir()) == sorted([sha(CONFIG), sha(old)])
    assert not (repo / "snapshots" / TWO).exists()
    assert (repo / "refs" / "main").read_text() == ONE
    found = snapshot_download("org/tiny", local_files_only=True, cache_dir=cache.root / "hf")
    assert (Path(found) / "model.safetensors").read_bytes() == old
    # The last one out takes the repository with it.
    assert remove(context(tmp_path / "state", cache), cache, "tiny-import").status == (
        types_pb2.TASK_STATUS_CHANGED)  # fmt: skip
    assert not repo.exists() and not list(cache.root.glob(".removing-*"))


def test_a_new_revision_of_an_entry_drops_the_old_snapshot_and_its_blobs(tmp_path: Path) -> None:
    cache = ModelCache(tmp_path / "models", reserve=0)
    old, new = os.urandom(2000), os.urandom(2500)
    before = hold(cache, "tiny", ONE, {"config.json": CONFIG, "model.safetensors": old})
    after = hold(cache, "tiny", TWO, {"config.json": CONFIG, "model.safetensors": new})
    cache.drop_replaced(before, after)
    repo = cache.root / "hf" / "models--org--tiny"
    assert [p.name for p in (repo / "snapshots").iterdir()] == [TWO]
    assert sorted(b.name for b in (repo / "blobs").iterdir()) == sorted([sha(CONFIG), sha(new)])
    assert (repo / "refs" / "main").read_text() == TWO
    assert (repo / "snapshots" / TWO / "config.json").read_bytes() == CONFIG
    # A new repository for the entry: the old repository's folder goes as a whole.
    moved = hold(cache, "tiny", ONE, {"config.json": CONFIG}, repo="org/renamed")
    cache.drop_replaced(after, moved)
    assert not repo.exists() and not list(cache.root.glob(".removing-*"))


def test_a_removal_and_a_fetch_of_one_entry_arriving_together_do_not_both_go_on(
    tmp_path: Path,
) -> None:
    cache = ModelCache(tmp_path / "models", reserve=0)
    hold(cache, "tiny", ONE, {"m.gguf": b"old weights"}, FILES, "")
    ctx = context(tmp_path / "state", cache, podman_s=0.3)
    compose = "services:\n  web:\n    image: nginx\n"
    ctx.store.write("chat", compose, sha(compose.encode()))  # the removal asks podman about it
    data = b"new weights"
    task = pb.FetchModel(entry="tiny", revision=TWO, layout=FILES, chunk_size=MIB, files=[
        pb.FetchFile(path="m.gguf", size=len(data), sha256=sha(data), chunks=[sha(data)],
                     url="http://127.0.0.1:9/m.gguf")])  # fmt: skip
    fetching = FetchModel(cache)
    spec = fetching.parse(pb.TaskRequest(task_id="f", fetch_model=task))

    async def both() -> tuple[Outcome[CacheResult], Outcome[CacheResult]]:
        removal = asyncio.create_task(RemoveModelCache(cache).run(ctx, RemoveSpec("tiny"), False))
        await asyncio.sleep(0)  # the removal is past its check, waiting for podman
        fetched = await fetching.run(ctx, spec, False)
        return await removal, fetched

    removed, fetched = asyncio.run(both())
    assert fetched.status == Status.FAILED
    assert "tiny is being fetched" in fetched.message
    assert removed.status == Status.CHANGED, removed.message
    assert cache.index.records() == [] and not (cache.root / "files" / "tiny").exists()
    assert cache.active == set()


def fetch_task(entry: str, files: dict[str, bytes], layout: str = "hf",
               repo: str = "org/tiny") -> pb.TaskRequest:  # fmt: skip
    task = pb.FetchModel(entry=entry, revision=ONE, layout=layout, repo=repo, chunk_size=MIB)
    for path, data in files.items():
        task.files.append(
            pb.FetchFile(
                path=path,
                size=len(data),
                sha256=sha(data),
                chunks=[sha(data)],
                url=f"http://127.0.0.1:9/{path}",
            )
        )
    return pb.TaskRequest(task_id=f"f-{entry}", fetch_model=task)


def test_a_fetch_of_a_second_entry_of_a_repository_is_refused(tmp_path: Path) -> None:
    cache = ModelCache(tmp_path / "models", reserve=0)
    hold(cache, "tiny-import", ONE, {"config.json": CONFIG})
    result = run_task(
        context(tmp_path / "state", cache),
        fetch_task("tiny-pull", {"c.json": b"x"}),
        {"fetch_model": FetchModel(cache)},
    )
    assert result.status == types_pb2.TASK_STATUS_FAILED
    assert result.message.endswith(
        "uncache tiny-import first: hubctl models uncache tiny-import --node gpu-a"
    )
    assert [r.entry for r in cache.index.records()] == ["tiny-import"]


def test_a_removal_arriving_while_a_fetch_checks_space_is_refused(tmp_path: Path) -> None:
    cache = ModelCache(tmp_path / "models", reserve=0)
    hold(cache, "tiny", "2" * 40, {"m.gguf": b"old"}, "files", "")
    ctx = context(tmp_path / "state", cache)
    fetching = FetchModel(cache)
    spec = fetching.parse(fetch_task("tiny", {"m.gguf": b"new"}, "files", ""))

    async def both() -> tuple[Outcome[CacheResult], Outcome[CacheResult]]:
        fetch = asyncio.create_task(fetching.run(ctx, spec, False))
        await asyncio.sleep(0)  # the fetch is past its check, counting what is missing
        removed = await RemoveModelCache(cache).run(ctx, RemoveSpec("tiny"), False)
        return removed, await fetch

    removed, fetched = asyncio.run(both())
    assert removed.status == Status.FAILED and "being fetched" in removed.message
    assert fetched.status == Status.FAILED  # port 9: nothing answers
