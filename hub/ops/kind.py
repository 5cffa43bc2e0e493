"""The one interface every operation kind implements.

An operation kind (switch, drain, stop, assign-apply, assign-rollback, and the model and
environment kinds to come) says what happens on one node; the OperationManager does the
rest for every kind alike: reserving nodes, batches (`--serial`, `--max-fail`), events and
agent progress stored with the operation, cancellation, the recap, the stored outcome.

To add a kind: subclass OperationKind in the package that owns the feature, give it a
`name`, implement `run_node`, and submit `Request(YourKind(...), nodes)` from its gRPC
handler. Nothing in hub/ops changes.

A kind whose work runs on the hub itself (a registry pull) subclasses HubKind instead: it
runs once, as the pseudo target HUB_TARGET, with no agent; it holds its `reservation` (a key
of its choosing, e.g. the registry entry) as a node operation holds its nodes, and its events,
progress, cancel, recap and stored outcome are those of every operation. Submit it as
`Request(YourHubKind(...), [])`.
"""

from __future__ import annotations

import asyncio
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


HUB_TARGET = "hub"  # the one target of an operation that runs on the hub itself
Progress = Callable[[str, str, float | None], None]  # (phase, message, percent)


@dataclass(frozen=True)
class HubRun:
    """What a kind that runs on the hub gets."""

    operation_id: str
    # A step event under the target "hub".
    report: Report
    # A progress event, bounded in storage like an agent task's progress.
    progress: Progress
    # Set when the operation is cancelled: stop, and return Outcome("cancelled", ...).
    cancel: asyncio.Event
    check: bool


class OperationKind(ABC):
    name: ClassVar[str]
    # True: the operation runs once on the hub itself (HubKind.run_hub), not on nodes.
    on_hub: ClassVar[bool] = False

    @property
    def configuration(self) -> str:
        """The configuration the operation is about, for listings ('' when none)."""
        return ""

    @abstractmethod
    async def run_node(self, run: NodeRun) -> Outcome:
        """Do the kind's work on one node; raise nothing for expected failures: return them
        as an Outcome (failed, unreachable, cancelled)."""


class HubKind(OperationKind):
    on_hub = True

    @property
    @abstractmethod
    def reservation(self) -> str:
        """What the operation holds while it runs: a second operation asking for the same
        is refused (e.g. "registry entry qwen"), as a busy node is."""

    async def run_node(self, run: NodeRun) -> Outcome:
        raise TypeError(f"{self.name} runs on the hub, not on node {run.node}")

    @abstractmethod
    async def run_hub(self, run: HubRun) -> Outcome:
        """Do the work on the hub; expected failures and a cancel are an Outcome."""


@dataclass(frozen=True)
class Request:
    kind: OperationKind
    nodes: list[str]
    serial: int = 0
    max_fail_percent: float = 0.0
    check: bool = False


Observe = Callable[[str, float], None]  # (step, seconds): the switch step histogram
