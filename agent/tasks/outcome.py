"""What tasks return: plain data, turned into protobuf only at the edge (agent/convert.py)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Generic, TypeVar

from agent.overrides import Fallback
from agent.tasks.context import Running

D = TypeVar("D")


class Status(enum.Enum):
    OK = "ok"  # nothing needed changing
    CHANGED = "changed"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Outcome(Generic[D]):
    status: Status
    message: str
    data: D | None = None  # what goes into the result's data field, if anything


@dataclass(frozen=True)
class Report:
    """What a GPU assignment did: applying one, or the fallbacks a project start made."""

    project: Running | None = None
    fallbacks: tuple[Fallback, ...] = ()
    recreated: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


def counted(count: int, noun: str) -> str:
    """'1 container', '3 containers': how task messages count things."""
    return f"{count} {noun}{'' if count == 1 else 's'}"
