"""What the assignment procedure works with and produces (no protobuf, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass

from hub.placement import GpuSlot, Plan, Warning
from hub.store.assignments import Assigned


class AssignError(Exception):
    """Refused before anything changed; `kind` picks the gRPC status."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # not_found, invalid, conflict, unavailable


@dataclass(frozen=True)
class Change:
    service: str
    change: str  # added, moved, budget, removed
    before: Assigned | None
    after: Assigned | None


@dataclass(frozen=True)
class Preview:
    configuration: str
    strategy: str
    plan: Plan
    assigned: tuple[Assigned, ...]
    gpus: tuple[GpuSlot, ...]
    warnings: tuple[Warning, ...]
    changes: tuple[Change, ...]


@dataclass(frozen=True)
class ServiceTarget:
    """One service as one node must run it: here on these GPUs, or not here."""

    service: str
    here: bool
    gpus: tuple[int, ...] = ()
    budget_gb: float | None = None


@dataclass(frozen=True)
class NodeOverride:
    node: str
    project: str
    services: tuple[ServiceTarget, ...]
