"""Each node's model cache, as its agent last reported it (Hello.caches, then Heartbeat.caches
whenever it changed). Kept in memory like the environments (hub/envs/view.py): the agent is the
authority and reports its cache again at every connect; a node that went down keeps what it
said last (listings flag it as not connected).

Pure: the agent link converts the reports (protobuf) into CachedView and hands them here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

COMPLETE = "complete"
CACHE_STATES = (COMPLETE, "partial", "fetching")


@dataclass(frozen=True)
class CachedView:
    """One registry entry in one node's cache (agent_link.proto CachedEntry)."""

    entry: str
    revision: str
    size: int  # bytes on the node, complete files and partial ones
    verified: bool  # every file present and its sha256 checked
    state: str  # complete, partial, fetching
    path: str  # where engines read it on the node
    layout: str = "files"  # files or hf
    repo: str = ""  # hf layout: ORG/NAME

    @property
    def usable(self) -> bool:
        """An engine can start from it now: complete and verified."""
        return self.state == COMPLETE and self.verified


class NodeCaches:
    """node -> the entries its cache holds. Written by the agent link, read by the registry's
    listings, the cache operations and placement."""

    def __init__(self) -> None:
        self._caches: dict[str, tuple[CachedView, ...]] = {}

    def replace(self, node: str, entries: Iterable[CachedView]) -> None:
        """What the node's cache holds now (a hello or a heartbeat that carried caches)."""
        self._caches[node] = tuple(sorted(entries, key=lambda view: view.entry))

    def update(self, node: str, view: CachedView) -> None:
        """One entry as a task's result says it is now (before the next heartbeat)."""
        others = [held for held in self.of(node) if held.entry != view.entry]
        self.replace(node, [*others, view])

    def forget(self, node: str, entry: str) -> None:
        """The entry is gone from the node's cache (a removal's result)."""
        self.replace(node, [held for held in self.of(node) if held.entry != entry])

    def drop(self, node: str) -> None:
        """The node is gone from the cluster (removed), not merely disconnected."""
        self._caches.pop(node, None)

    def of(self, node: str) -> tuple[CachedView, ...]:
        return self._caches.get(node, ())

    def held(self, node: str, entry: str) -> CachedView | None:
        return next((view for view in self.of(node) if view.entry == entry), None)

    def holders(self, entry: str) -> list[tuple[str, CachedView]]:
        """(node, what it holds of the entry) for every node whose cache holds the entry or
        part of it, by node name."""
        found = ((node, self.held(node, entry)) for node in sorted(self._caches))
        return [(node, view) for node, view in found if view is not None]

    def nodes(self) -> list[str]:
        return sorted(self._caches)

    def items(self) -> list[tuple[str, tuple[CachedView, ...]]]:
        return sorted(self._caches.items())
