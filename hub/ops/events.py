"""An operation's events: step boundaries from the hub, progress from the agents' tasks.

Progress is bounded where it is stored: the last PROGRESS_KEPT events of each task of each
node are kept, older ones are deleted as new ones arrive and counted per node, so a chatty
task (a 15-minute compile) cannot grow the database without bound. Watchers see every event.
"""

from __future__ import annotations

from collections import deque

from hub.store.operations import Event

__all__ = ["PROGRESS_KEPT", "Event", "ProgressLog"]
PROGRESS_KEPT = 50


class ProgressLog:
    """Which stored progress events to delete, and how many each node lost."""

    def __init__(self, kept: int = PROGRESS_KEPT) -> None:
        self.kept = kept
        # By node, then task: a node's end forgets its own tasks without looking at every
        # other node's (a scan of all of them per node was O(nodes²) in a `switch --all`).
        self._seqs: dict[str, dict[str, deque[int]]] = {}
        self.dropped: dict[str, int] = {}

    def add(self, node: str, task_id: str, seq: int) -> int | None:
        """Record a stored progress event; the seq of the one to delete, if any."""
        seqs = self._seqs.setdefault(node, {}).setdefault(task_id, deque())
        seqs.append(seq)
        if len(seqs) <= self.kept:
            return None
        self.dropped[node] = self.dropped.get(node, 0) + 1
        return seqs.popleft()

    def finish_node(self, node: str) -> int:
        """Forget a finished node's tasks; how many of its progress events were dropped."""
        self._seqs.pop(node, None)
        return self.dropped.get(node, 0)
