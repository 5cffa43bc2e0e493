"""Which GPU processes are gpufleet's: those running in a container of a compose project this
agent started, and the supervised servers of its host process projects with their children.
NVML lists host pids; /proc/PID/cgroup names the container (`libpod-<64 hex>` under both
cgroup managers and cgroup versions); the health monitor knows this agent's containers. A
supervisor leads a session of its own (agent/processes.py), which its server and the server's
children inherit: /proc/PID/stat names it. A pid that is gone, or whose files cannot be read,
is not managed."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import replace
from pathlib import Path

from agent.probes import ProbeResult

CONTAINER = re.compile(r"libpod-(?!conmon-)([0-9a-f]{64})")
ReadCgroup = Callable[[int], str | None]
ReadSession = Callable[[int], int | None]


def container_of(cgroup: str) -> str | None:
    """The podman container id in a /proc/PID/cgroup text, or None (a host process)."""
    found = CONTAINER.search(cgroup)
    return found.group(1) if found else None


def read_cgroup(pid: int, proc: Path = Path("/proc")) -> str | None:
    try:
        return (proc / str(pid) / "cgroup").read_text()
    except (OSError, ValueError):
        return None


def read_session(pid: int, proc: Path = Path("/proc")) -> int | None:
    """The session id of a live process (field 6 of /proc/PID/stat), or None."""
    try:
        text = (proc / str(pid) / "stat").read_text()
        return int(text[text.rindex(")") + 2 :].split()[3])
    except (OSError, ValueError, IndexError):
        return None


def is_managed(pid: int, containers: Collection[str], read: ReadCgroup = read_cgroup,
               sessions: Collection[int] = (),
               read_sid: ReadSession = read_session) -> bool:  # fmt: skip
    if sessions and read_sid(pid) in sessions:
        return True
    text = read(pid)
    return text is not None and container_of(text) in containers


def mark(found: ProbeResult, containers: Collection[str], read: ReadCgroup = read_cgroup,
         sessions: Collection[int] = (),
         read_sid: ReadSession = read_session) -> ProbeResult:  # fmt: skip
    """The probe's result with each GPU process marked managed or not; `sessions`: those of
    the supervisors of host process projects that run now."""
    if not any(gpu.processes for gpu in found.gpus):
        return found

    def managed(pid: int) -> bool:
        return is_managed(pid, containers, read, sessions, read_sid)

    gpus = tuple(
        replace(gpu, processes=tuple(replace(p, managed=managed(p.pid)) for p in gpu.processes))
        for gpu in found.gpus
    )
    return replace(found, gpus=gpus)
