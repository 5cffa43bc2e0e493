"""The one interface every operation kind implements.

An operation kind (switch, drain, stop, assign-apply, assign-rollback, and the model and
environment kinds to come) says what happens on one node; the OperationManager does the
rest for every kind alike: reserving nodes, batches (`--serial`, `--max-fail`), events and
agent progress stored with the operation, cancellation, the recap, the stored outcome.

To add a kind: subclass OperationKind in the package that owns the feature, give it a
`name`, implement `run_node`, and submit `Request(YourKind(...), nodes)` from its gRPC
handler. Nothing in hub/ops changes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from hub.ops.batches import Outcome
from hub.ops.remote import RemoteAgent
from hub.ops.steps import Report, SetState
from hub.states import Running


@dataclass(frozen=True)
class NodeRun:
    """What a kind gets for one node of its operation."""

    node: str
    agent: RemoteAgent
    # What the node runs as its agent last reported it (None: nothing).
    running: Running | None
    report: Report
    # Moves the node's switch state (no-op in check mode).
    set_state: SetState
    check: bool


class OperationKind(ABC):
    name: ClassVar[str]

    @property
    def configuration(self) -> str:
        """The configuration the operation is about, for listings ('' when none)."""
        return ""

    @abstractmethod
    async def run_node(self, run: NodeRun) -> Outcome:
        """Do the kind's work on one node; raise nothing for expected failures: return them
        as an Outcome (failed, unreachable, cancelled)."""


@dataclass(frozen=True)
class Request:
    kind: OperationKind
    nodes: list[str]
    serial: int = 0
    max_fail_percent: float = 0.0
    check: bool = False


Observe = Callable[[str, float], None]  # (step, seconds): the switch step histogram
