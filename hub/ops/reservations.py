"""Which operation holds which node, or which hub reservation: one operation at a time each.

A node kind reserves its nodes, a hub kind (HubKind) its reservation key ("pull <entry>"),
from the moment it is accepted until it ends. Reserving happens before the first await of a
submit, so two requests racing for a node cannot both pass. Under "Beyond one hub" in
docs/architecture.md this becomes a row per reservation; this is the one place to change.
"""

from __future__ import annotations

from hub.ops.kind import OperationKind


class Reserved(Exception):
    """What was asked for is held by another operation; the message says what to do."""


class Reservations:
    def __init__(self) -> None:
        self.busy: dict[str, str] = {}  # node -> operation id
        # A hub kind's reservation -> the operation holding it and its kind (to join it).
        self.held: dict[str, tuple[str, OperationKind]] = {}

    def check_nodes(self, nodes: list[str]) -> None:
        for node in nodes:
            _check_free(f"node {node}", self.busy.get(node))

    def check_key(self, key: str) -> None:
        _check_free(key, self.holding(key))

    def take(self, operation_id: str, nodes: list[str], key: str, kind: OperationKind) -> None:
        """Hold `key` for a hub kind (when given), else `nodes`."""
        if key:
            self.held[key] = (operation_id, kind)
        else:
            self.busy.update(dict.fromkeys(nodes, operation_id))

    def holder(self, key: str) -> tuple[str, OperationKind] | None:
        """The hub operation holding `key` now, and its kind."""
        return self.held.get(key)

    def holding(self, key: str) -> str | None:
        found = self.held.get(key)
        return found[0] if found is not None else None

    def release(self, nodes: list[str], operation_id: str) -> None:
        """The nodes `operation_id` holds among `nodes` are free again."""
        for node in nodes:
            if self.busy.get(node) == operation_id:
                del self.busy[node]

    def let_go(self, key: str, operation_id: str) -> None:
        if key and self.holding(key) == operation_id:
            del self.held[key]


def _check_free(what: str, holder: str | None) -> None:
    if holder is not None:
        raise Reserved(
            f"{what} is already in operation {holder}: wait for it "
            f"(hubctl ops watch {holder}) and try again"
        )
