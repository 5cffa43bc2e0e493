"""The last lines of logs, bounded in lines and bytes (the newest kept): a host process's
rotated log files, or lines gathered from podman logs."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

DEFAULT_LINES = 100
MAX_LINES = 10000
MAX_BYTES = 1024 * 1024


def _end(path: Path, size: int) -> tuple[bytes, bool]:
    """The last `size` bytes of a file (b"" when it is missing), and whether that is all."""
    try:
        with open(path, "rb") as file:
            total = file.seek(0, os.SEEK_END)
            file.seek(max(0, total - size))
            return file.read(size), total <= size
    except OSError:
        return b"", True


def tail_files(paths: Sequence[Path], lines: int, max_bytes: int = MAX_BYTES) -> list[str]:
    """The last `lines` lines of `paths` read as one log (the newest file first: server.log,
    server.log.1, ...), oldest first, at most `max_bytes` of them (counting a newline each)."""
    found: list[bytes] = []  # newest first
    budget = max_bytes
    for path in paths:
        data, whole = _end(path, budget + 1)
        if not data:
            continue
        parts = data.split(b"\n")
        if data.endswith(b"\n"):
            parts.pop()
        if not whole:
            parts = parts[1:]  # begins inside a line that would not fit anyway
        for part in reversed(parts):
            if len(found) >= lines or len(part) + 1 > budget:
                return _decoded(found)
            found.append(part)
            budget -= len(part) + 1
        if len(found) >= lines or not whole:  # an older file would leave a hole before these
            break
    return _decoded(found)


def _decoded(newest_first: list[bytes]) -> list[str]:
    return [line.decode(errors="replace") for line in reversed(newest_first)]


def newest(lines: Sequence[str], max_bytes: int = MAX_BYTES) -> list[str]:
    """The last of `lines` that fit in `max_bytes` (UTF-8, a newline each)."""
    budget, kept = max_bytes, 0
    for line in reversed(lines):
        size = len(line.encode(errors="replace")) + 1
        if size > budget:
            break
        budget -= size
        kept += 1
    return list(lines[len(lines) - kept :])
