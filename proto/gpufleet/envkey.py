"""The compatibility key of a llama-cpp-python wheel (issue 15): everything that decides whether
a wheel built on one node runs, with the same GPU code, on another. Shared by the agent (which
computes it for what it builds or needs) and the hub (which stores wheels under it and lists
its parts).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping

PARTS = ("version", "backend", "toolkit", "targets", "arch", "libc", "python")


def parts(version: str, backend: str, toolkit: str, targets: Iterable[str], arch: str,
          libc: str, python: str) -> dict[str, str]:  # fmt: skip
    """e.g. {"version": "0.3.36", "backend": "vulkan", "toolkit": "glslc 2023.2",
    "targets": "", "arch": "x86_64", "libc": "glibc 2.36", "python": "cp311"}."""
    return {
        "version": version,
        "backend": backend,
        "toolkit": toolkit,
        "targets": ";".join(sorted(set(targets))),
        "arch": arch,
        "libc": libc,
        "python": python,
    }


def key(found: Mapping[str, str]) -> str:
    """sha256 hex of the parts' canonical text (unknown extra parts are ignored)."""
    canonical = json.dumps({part: found.get(part, "") for part in PARTS}, sort_keys=True,
                           separators=(",", ":"))  # fmt: skip
    return hashlib.sha256(canonical.encode()).hexdigest()


def describe(found: Mapping[str, str]) -> str:
    """One line: "llama-cpp-python 0.3.36 vulkan (glslc 2023.2), x86_64 glibc 2.36 cp311"."""
    toolkit = f" ({found.get('toolkit')})" if found.get("toolkit") else ""
    targets = f" for {found.get('targets')}" if found.get("targets") else ""
    return (f"llama-cpp-python {found.get('version', '?')} {found.get('backend', '?')}{toolkit}"
            f"{targets}, {found.get('arch', '?')} {found.get('libc', '?')} "
            f"{found.get('python', '?')}")  # fmt: skip


def version_order(version: str) -> tuple[tuple[int, str], ...]:
    """Sorts llama-cpp-python versions: 0.3.9 < 0.3.36; which environment of a backend is the
    newest (the one a process of that backend runs from, on the agent and in the hub's view)."""
    return tuple((int(p), "") if p.isdigit() else (-1, p) for p in re.split(r"[.+-]", version))
