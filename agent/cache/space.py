"""The disk-space check before a fetch: the cache's filesystem must hold the missing bytes and
still keep --cache-reserve free."""

from __future__ import annotations

import os
import re
from pathlib import Path

DEFAULT_RESERVE = 1 << 30
UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
SIZE = re.compile(r"^(?P<number>\d+(\.\d+)?)\s*(?P<unit>[KMGT]?)(i?B)?$", re.I)


class SpaceError(Exception):
    """Not enough room; one line naming the fix."""


def parse_size(text: str) -> int:
    """1G, 500M, 2.5T, 1048576: bytes (units are powers of 1024). ValueError: one line."""
    found = SIZE.match(text.strip())
    if found is None:
        raise ValueError(f"size {text[:40]!r}: expected a number with K, M, G or T, e.g. 1G")
    return int(float(found.group("number")) * UNITS[found.group("unit").upper()])


def human(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"


def free_bytes(root: Path) -> int:
    """Free bytes (for unprivileged users) of the filesystem that holds `root`, or would."""
    path = root
    while not path.exists() and path != path.parent:
        path = path.parent
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def check_space(root: Path, missing: int, reserve: int, entry: str = "") -> None:
    free = free_bytes(root)
    if missing and free - reserve < missing:
        what = f"{entry} needs" if entry else "needs"
        raise SpaceError(
            f"model cache {root}: {what} {human(missing)}, {human(free)} free, keeping "
            f"{human(reserve)}: free space or `hubctl models uncache`"
        )
