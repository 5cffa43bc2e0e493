"""remove_model_cache: delete a registry entry from this node's model cache; refused while a
fetch of it runs or a running project's compose file or process spec uses its files (one line
naming the projects). Ok when the cache does not hold it. The entry is renamed away at once and
deleted in a thread."""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass

from agent.cache.fetch import CacheResult
from agent.cache.layout import PARTIAL, check_entry
from agent.cache.protos import cache_report
from agent.cache.store import ModelCache
from agent.processes import SPEC_FILE
from agent.projects import COMPOSE_FILE
from agent.tasks.base import TaskKind
from agent.tasks.context import TaskContext
from agent.tasks.fetch_model import cache_of
from agent.tasks.outcome import Outcome, Status
from gpufleet.v1 import agent_link_pb2 as pb


@dataclass(frozen=True)
class RemoveSpec:
    entry: str


async def running_texts(ctx: TaskContext) -> dict[str, str]:
    """Each running project's stored compose file or process spec, with the process spec's
    arguments as they run (${GPUFLEET_MODEL_CACHE} expanded)."""
    found = {}
    for running in await ctx.projects():
        directory = ctx.store.project(running.name).directory
        texts = []
        for name in (COMPOSE_FILE, SPEC_FILE):
            try:
                texts.append((directory / name).read_text())
            except OSError:
                continue
        if ctx.processes.is_process(running.name):
            texts.append("\n".join(ctx.processes.expand_text(t) for t in texts))
        found[running.name] = "\n".join(texts)
    return found


def users(cache: ModelCache, record_entry: str, texts: dict[str, str]) -> list[str]:
    record = cache.index.read(record_entry)
    if record is None:
        return []
    return sorted(name for name, text in texts.items() if cache.uses(record, [text]))


class RemoveModelCache(TaskKind[RemoveSpec, CacheResult]):
    kind = "remove_model_cache"

    def __init__(self, cache: ModelCache | None = None) -> None:
        self.cache = cache

    def parse(self, request: pb.TaskRequest) -> RemoveSpec:
        return RemoveSpec(check_entry(request.remove_model_cache.entry))

    async def run(self, ctx: TaskContext, spec: RemoveSpec, check: bool
                  ) -> Outcome[CacheResult]:  # fmt: skip
        cache = cache_of(ctx, self.cache)
        entry = spec.entry
        if entry in cache.active:
            return Outcome(Status.FAILED, f"{entry} is being fetched: cancel the fetch first",
                           CacheResult(cache.index.read(entry)))  # fmt: skip
        # Marked before the first await: a fetch (or another removal) of the entry arriving
        # meanwhile is refused instead of writing into what this removal deletes.
        cache.active.add(entry)
        try:
            return await self._remove(ctx, cache, entry, check)
        finally:
            cache.active.discard(entry)

    async def _remove(self, ctx: TaskContext, cache: ModelCache, entry: str, check: bool
                      ) -> Outcome[CacheResult]:  # fmt: skip
        record = cache.index.read(entry)
        if record is None:
            partial = cache.root / PARTIAL / entry
            if partial.exists() and not check:
                await asyncio.to_thread(shutil.rmtree, partial, True)
            gone = f"{entry} is not in this node's model cache"
            return Outcome(Status.OK, gone, CacheResult(None))
        try:
            texts = await running_texts(ctx)
        except (RuntimeError, OSError) as exc:  # podman did not answer
            return Outcome(Status.FAILED, f"cannot tell whether a project uses {entry} "
                           f"({exc}): try again", CacheResult(record))  # fmt: skip
        using = users(cache, entry, texts)
        if using:
            return Outcome(Status.FAILED, f"{entry} is in use by {', '.join(using)}: stop "
                           f"{'it' if len(using) == 1 else 'them'} first",
                           CacheResult(record))  # fmt: skip
        if check:
            return Outcome(Status.CHANGED, f"would remove {entry} from the model cache",
                           CacheResult(record))  # fmt: skip
        others = [r for r in cache.index.records() if r.entry != entry]
        await cache.discard(record, others)
        return Outcome(Status.CHANGED, f"removed {entry} from the model cache", CacheResult(None))

    def fill(self, result: pb.TaskResult, data: CacheResult) -> None:
        result.cache.CopyFrom(cache_report(data))
