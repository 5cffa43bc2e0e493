"""Sane ranges for every number and string that crosses the wire, and listing pages.

What agents and operators send is checked here before it reaches memory or the database:
a value out of range is refused naming its field (`OutOfBounds`), so one bad sender cannot
poison what others write (SQLite stores at most 2^63-1; NaN breaks comparisons).
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Iterable, Mapping
from typing import TypeVar

from google.protobuf.message import Message

M = TypeVar("M", bound=Message)

MAX_GPUS = 256  # GPUs in one host's inventory
MAX_GPU_INDEX = MAX_GPUS - 1
MAX_MEMORY_MB = 1 << 24  # 16 TiB: far above any GPU, far below SQLite's 2^63
MAX_PROCESSES = 1024  # per GPU
MAX_PID = 1 << 22  # Linux's largest pid_max
TEMPERATURE_C = (-60.0, 200.0)
MAX_POWER_W = 10_000.0
MAX_LABELS = 64
LABEL_KEY_CHARS = 63
LABEL_VALUE_CHARS = 253
MESSAGE_CHARS = 1000  # free text (probe errors, state messages): cut, not refused
# Identifiers, as long as their columns (hub/store/models.py).
CHARS = {
    "agent_id": 64, "hostname": 253, "agent_version": 64, "probe": 32,
    "uuid": 96, "name": 128, "compute_capability": 16, "gfx_target": 16,
    "pci_bus_id": 32, "driver_version": 32,
}  # fmt: skip

REPLY_BYTES = 3 * 1024 * 1024  # a listing's items stop here: under gRPC's 4 MiB limit
PAGE_SIZE = 500  # default page of ListNodes, ListGpus, GetStatus
MAX_PAGE_SIZE = 5000  # most per page of those: 5,000 GPUs are about 1 MiB on the wire
MAX_NAMES = 10_000  # node names one listing filters by
NODE_NAME_CHARS = 253
MAX_LIMIT = 500  # most rows of a limited listing (operations, audit)
MAX_SERIAL = 100_000
MAX_BUDGET_GB = float(MAX_MEMORY_MB // 1024)  # a VRAM budget: at most what a GPU could have


def budget_problem(budget: float) -> str | None:
    """Why a VRAM budget (GB) is refused, or None: more than 0, finite, not absurd."""
    if not math.isfinite(budget) or not 0 < budget <= MAX_BUDGET_GB:
        most = f"{MAX_BUDGET_GB:g}"
        return f"--vram-budget must be more than 0 GB and at most {most} GB, got {budget:g}"
    return None


class OutOfBounds(ValueError):
    """A value outside its sane range; the message names the field and the range."""


def integer(field: str, value: int, high: int, low: int = 0) -> int:
    if not low <= value <= high:
        raise OutOfBounds(f"{field} {value} is out of range: {low}..{high}")
    return value


def real(field: str, value: float, low: float, high: float) -> float:
    if not math.isfinite(value) or not low <= value <= high:
        raise OutOfBounds(f"{field} {value} is out of range: {low:g}..{high:g}")
    return value


def text(field: str, value: str, chars: int | None = None) -> str:
    """An identifier: printable and no longer than its column; refused otherwise."""
    most = chars if chars is not None else CHARS[field]
    if len(value) > most:
        raise OutOfBounds(f"{field} is {len(value)} characters long: at most {most}")
    if not value.isprintable():
        raise OutOfBounds(f"{field} {value[:64]!r} has control characters")
    return value


def message(value: str, chars: int = MESSAGE_CHARS) -> str:
    """Free text: cut to `chars`, control characters but newlines and tabs dropped."""
    return "".join(c for c in value[:chars] if c.isprintable() or c in "\n\t")


def labels(field: str, found: Mapping[str, str]) -> dict[str, str]:
    if len(found) > MAX_LABELS:
        raise OutOfBounds(f"{field} has {len(found)} labels: at most {MAX_LABELS}")
    for key, value in found.items():
        text(f"{field} key", key, LABEL_KEY_CHARS)
        if not key:
            raise OutOfBounds(f"{field} has an empty key")
        text(f"{field} {key!r}", value, LABEL_VALUE_CHARS)
    return dict(found)


def limit(field: str, value: int, default: int, most: int = MAX_LIMIT) -> int:
    """An operator's row limit: 0 means the default; more than `most` is refused."""
    if value == 0:
        return default
    return integer(field, value, most, low=1)


def page_size(value: int) -> int:
    return limit("page_size", value, PAGE_SIZE, MAX_PAGE_SIZE)


def choices(field: str, given: Iterable[str], allowed: Iterable[str]) -> tuple[str, ...]:
    """Filter values, each one of `allowed` (sorted, duplicates dropped); OutOfBounds names
    the first that is not and the allowed ones."""
    known = tuple(allowed)
    chosen = sorted(set(given))
    for value in chosen:
        if value not in known:
            raise OutOfBounds(f"invalid {field} {value[:64]!r}: one of {', '.join(known)}")
    return tuple(chosen)


def names(field: str, given: Iterable[str]) -> tuple[str, ...]:
    """Node names to filter by (sorted, duplicates dropped), at most MAX_NAMES."""
    chosen = sorted(set(given))
    if len(chosen) > MAX_NAMES:
        raise OutOfBounds(f"{field} lists {len(chosen)} nodes: at most {MAX_NAMES}")
    return tuple(text(field, name, NODE_NAME_CHARS) for name in chosen)


class Page:
    """Opaque page tokens: the last key of the previous page, in URL-safe base64."""

    PREFIX = "p1:"

    @classmethod
    def token(cls, *key: str | int) -> str:
        raw = cls.PREFIX + "\x00".join(str(part) for part in key)
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def key(cls, token: str, parts: int) -> tuple[str, ...]:
        """The key a token carries; OutOfBounds when it is not one of ours."""
        if not token:
            return ()
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raw = ""
        key = tuple(raw.removeprefix(cls.PREFIX).split("\x00"))
        if not raw.startswith(cls.PREFIX) or len(key) != parts or len(token) > 1024:
            raise OutOfBounds("invalid page_token: list again from the first page without one")
        return key


def page(size: int, token: str, parts: int) -> tuple[int, tuple[str, ...]]:
    """A listing request's page size and the key it continues after (() for the first)."""
    return page_size(size), Page.key(token, parts)


def gpu_key(key: tuple[str, ...]) -> tuple[str, int]:
    """(node, GPU index) from a ListGpus page key."""
    if not key:
        return "", -1
    index = key[1]
    if not (index.isascii() and index.isdigit() and len(index) <= 4):
        raise OutOfBounds("invalid page_token: list again from the first page without one")
    return key[0], int(index)


def within_reply(items: Iterable[M], budget: int = REPLY_BYTES) -> list[M]:
    """The first items (newest first where listings are) that fit in one reply: a listing
    of large items (operations over hundreds of nodes) stays under the message limit."""
    kept: list[M] = []
    for item in items:
        budget -= item.ByteSize() + 8
        if budget < 0 and kept:
            break
        kept.append(item)
    return kept
