"""The one interface every task kind implements.

A kind turns its TaskRequest field into a frozen Spec (`parse`, where what came from the wire
is validated: a ValueError there refuses the task with its message), runs on plain data
(`run`), and puts its outcome's data into the TaskResult (`fill`): protobuf stays at the edges.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Generic, Protocol, TypeVar

from agent.convert import running_to_proto
from agent.tasks.context import Running, TaskContext
from agent.tasks.outcome import Outcome
from gpufleet.v1 import agent_link_pb2 as pb

S = TypeVar("S")
D = TypeVar("D")


class TaskKind(ABC, Generic[S, D]):
    # The TaskRequest oneof field this kind answers.
    kind: ClassVar[str]

    @abstractmethod
    def parse(self, request: pb.TaskRequest) -> S:
        """The request as a Spec; ValueError (with a message for the hub) refuses it."""

    @abstractmethod
    async def run(self, ctx: TaskContext, spec: S, check: bool) -> Outcome[D]:
        """Do the task (`check`: only say what would change)."""

    @abstractmethod
    def fill(self, result: pb.TaskResult, data: D) -> None:
        """Put an outcome's data into the result."""

    async def cancelled(self, ctx: TaskContext, spec: S) -> D | None:
        """The data to report after the hub cancelled the task; runs outside the cancelled
        task, so it may still ask podman what runs now."""
        return None


class ProjectSpec(Protocol):
    @property
    def project(self) -> str: ...


P = TypeVar("P", bound=ProjectSpec)


class ProjectKind(TaskKind[P, Running]):
    """A task on one project: its data is the project as it runs, also after a cancel."""

    def fill(self, result: pb.TaskResult, data: Running) -> None:
        result.project.CopyFrom(running_to_proto(data))

    async def cancelled(self, ctx: TaskContext, spec: P) -> Running | None:
        return await ctx.running(spec.project)
