"""Which GPU processes are gpufleet's: those running in a container of a compose project this
agent started. NVML lists host pids; /proc/PID/cgroup names the container (`libpod-<64 hex>`
under both cgroup managers and cgroup versions); the health monitor knows this agent's
containers. A pid that is gone, or whose cgroup file cannot be read, is not managed."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import replace
from pathlib import Path

from agent.probes import ProbeResult

CONTAINER = re.compile(r"libpod-(?!conmon-)([0-9a-f]{64})")
ReadCgroup = Callable[[int], str | None]


def container_of(cgroup: str) -> str | None:
    """The podman container id in a /proc/PID/cgroup text, or None (a host process)."""
    found = CONTAINER.search(cgroup)
    return found.group(1) if found else None


def read_cgroup(pid: int, proc: Path = Path("/proc")) -> str | None:
    try:
        return (proc / str(pid) / "cgroup").read_text()
    except (OSError, ValueError):
        return None


def is_managed(pid: int, containers: Collection[str], read: ReadCgroup = read_cgroup) -> bool:
    text = read(pid)
    return text is not None and container_of(text) in containers


def mark(found: ProbeResult, containers: Collection[str],
         read: ReadCgroup = read_cgroup) -> ProbeResult:  # fmt: skip
    """The probe's result with each GPU process marked managed or not."""
    if not any(gpu.processes for gpu in found.gpus):
        return found
    gpus = tuple(
        replace(gpu, processes=tuple(
            replace(p, managed=is_managed(p.pid, containers, read)) for p in gpu.processes))
        for gpu in found.gpus
    )  # fmt: skip
    return replace(found, gpus=gpus)
