"""The node cache operation kinds: fetch a registry entry into nodes' model caches
(`hubctl models cache`, kind model-cache; also a model switch's fetch phase) and free it
(`hubctl models uncache`, kind model-uncache).

A fetch is the agent's fetch_model task: the entry's files with their sha256 and per-chunk
hashes, and for each a presigned URL when the object store gives one (S3), else the node
streams it through the hub's RegistryFetch.Download. The agent's progress (check, fetch bytes
n/m, verify) is the operation's. Presigned when the node's turn comes, so a long queue of
nodes never starts on expired URLs. What the agent says its cache holds afterwards is the
hub's view at once (the next heartbeat says it too).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from gpufleet.v1 import agent_link_pb2 as pb
from hub.models import deploy
from hub.ops.batches import Outcome
from hub.ops.kind import NodeRun, OperationKind
from hub.ops.steps import Cancelled, Unreachable
from hub.registry.caches import NodeCaches
from hub.registry.entries import Entry
from hub.registry.store import ObjectStore

PRESIGN_S = 12 * 3600  # a presigned URL's life: longer than any one node's fetch
CACHE, UNCACHE = "model-cache", "model-uncache"


def fetch_task(entry: Entry, store: ObjectStore) -> pb.FetchModel:
    """The agent's fetch_model task for `entry` (URLs presigned now, where the store can)."""
    files = [
        pb.FetchFile(path=f.path, size=f.size, sha256=f.sha256, chunks=list(f.chunks),
                     url=store.presign(entry.key(f.path), PRESIGN_S) or "")
        for f in entry.files
    ]  # fmt: skip
    return pb.FetchModel(entry=entry.name, revision=entry.revision, layout=entry.layout,
                         repo=entry.repo, chunk_size=entry.chunk_size, files=files)  # fmt: skip


async def fetch_on_node(run: NodeRun, entry: Entry, store: ObjectStore,
                        caches: NodeCaches, phase: str = "fetch") -> Outcome:  # fmt: skip
    """The entry into the node's cache; the outcome is the agent's, reported as `phase`."""
    try:
        step, view = await run.agent.fetch_model(fetch_task(entry, store), run.check)
    except Unreachable as exc:
        return Outcome("unreachable", str(exc))
    except Cancelled as exc:
        return Outcome("cancelled", str(exc))
    if view is not None and not run.check:
        caches.update(run.node, view)
    if step.message:
        run.report(phase, step.message)
    return Outcome(step.status, step.message)


@dataclass(frozen=True)
class Fetching:
    """What a model switch needs to fetch a model's registry entry first: the registry's
    object store and the nodes' caches (`hub.models.deployments.switch`)."""

    objects: ObjectStore
    caches: NodeCaches

    def lacking(self, entry: Entry, nodes: Collection[str]) -> list[str]:
        """The nodes whose cache does not hold the entry's revision complete and verified."""
        return [node for node in nodes if not holds(self.caches, node, entry)]


def holds(caches: NodeCaches, node: str, entry: Entry) -> bool:
    """The node's cache holds the entry's revision, complete and verified, and all of it: a
    node that cached a smaller --include set of the same commit has fewer bytes."""
    held = caches.held(node, entry.name)
    return (held is not None and held.usable and held.revision == entry.revision
            and held.size >= entry.size)  # fmt: skip


@dataclass(frozen=True)
class FetchPhase:
    """A model switch's first phase on a node whose cache lacks the model's entry."""

    entry: Entry
    fetching: Fetching

    async def run(self, run: NodeRun) -> Outcome | None:
        """None when the node may go on to the switch (it holds the entry now, or held it);
        else the outcome that ends the node's switch."""
        if holds(self.fetching.caches, run.node, self.entry):
            return None
        run.report("fetch", f"{self.entry.name} is not in the node's model cache: fetching it "
                            "from the registry first")  # fmt: skip
        outcome = await fetch_on_node(run, self.entry, self.fetching.objects,
                                      self.fetching.caches)  # fmt: skip
        if outcome.result in ("ok", "changed"):
            return None
        why = outcome.message or outcome.result
        return Outcome(outcome.result, f"fetching {self.entry.name} into the model cache: {why}")


@dataclass(frozen=True)
class ModelCacheKind(OperationKind):
    """`hubctl models cache`: the entry into each node's model cache."""

    name = CACHE
    entry: Entry
    store: ObjectStore
    caches: NodeCaches

    @property
    def configuration(self) -> str:
        return self.entry.name

    async def run_node(self, run: NodeRun) -> Outcome:
        return await fetch_on_node(run, self.entry, self.store, self.caches)


def runs_from(running: str, users: Collection[str]) -> str:
    """The model of `users` a node runs (its project "model-NAME"), "" for none."""
    model = deploy.model_of(running)
    return model if model and model in users else ""


@dataclass(frozen=True)
class ModelUncacheKind(OperationKind):
    """`hubctl models uncache`: the entry out of each node's model cache; a node that runs a
    model served from it is left as it is (the agent refuses too)."""

    name = UNCACHE
    entry: str
    users: frozenset[str]  # the models whose source is the entry
    caches: NodeCaches

    @property
    def configuration(self) -> str:
        return self.entry

    async def run_node(self, run: NodeRun) -> Outcome:
        model = runs_from(run.running.name if run.running is not None else "", self.users)
        if model:
            line = (f"runs model {model} from {self.entry}: stop it first (`hubctl models stop "
                    f"{model} --node {run.node}`)")  # fmt: skip
            run.report("result", line)
            return Outcome("failed", line)
        if run.check:
            return Outcome("changed", f"would remove {self.entry} from the model cache")
        try:
            step = await run.agent.remove_model_cache(self.entry)
        except Unreachable as exc:
            return Outcome("unreachable", str(exc))
        except Cancelled as exc:
            return Outcome("cancelled", str(exc))
        if not step.failed:
            self.caches.forget(run.node, self.entry)
        if step.message:
            run.report("remove", step.message)
        return Outcome(step.status, step.message)
