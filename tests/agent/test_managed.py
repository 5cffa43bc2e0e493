"""Which GPU processes are gpufleet's: pid -> /proc/PID/cgroup -> libpod container id."""

from __future__ import annotations

import os
from pathlib import Path

from agent.managed import container_of, is_managed, mark, read_cgroup
from agent.probes import GpuInfo, GpuProcess, ProbeResult

OURS = "a" * 64
OTHER = "b" * 64
CGROUPS = {
    1: f"0::/libpod_parent/libpod-{OURS}\n",  # cgroupfs manager, cgroup v2
    2: f"9:name=systemd:/libpod_parent/libpod-{OTHER}\n0::/libpod_parent/libpod-{OTHER}\n",
    3: f"0::/machine.slice/libpod-{OURS}.scope/container\n",  # systemd manager, nested
    4: f"0::/machine.slice/libpod-conmon-{OURS}.scope\n",  # conmon is not the container
    5: "0::/user.slice/user-1000.slice/session-2.scope\n",  # a host process
}


def test_container_of() -> None:
    assert container_of(CGROUPS[1]) == OURS and container_of(CGROUPS[3]) == OURS
    assert container_of(CGROUPS[2]) == OTHER
    assert container_of(CGROUPS[4]) is None and container_of(CGROUPS[5]) is None
    assert container_of(f"0::/libpod-{OURS[:12]}") is None  # a short id is no id


def test_only_processes_in_our_containers_are_managed() -> None:
    ours = {OURS}
    assert [pid for pid in CGROUPS if is_managed(pid, ours, CGROUPS.get)] == [1, 3]
    assert not is_managed(99, ours, CGROUPS.get)  # vanished: not managed


def test_mark_sets_each_gpu_process() -> None:
    processes = (GpuProcess(1, 4000), GpuProcess(5, 5000), GpuProcess(99, 1))
    gpu = GpuInfo(0, "GPU-0", "A", "nvidia", 24564, 9000, processes=processes)
    found = mark(ProbeResult("nvml", (gpu,)), {OURS}, CGROUPS.get)
    assert [(p.pid, p.managed) for p in found.gpus[0].processes] == [
        (1, True),
        (5, False),
        (99, False),
    ]
    bare = ProbeResult("nvml", (GpuInfo(0, "GPU-0", "A", "nvidia", 1, 0),))
    assert mark(bare, {OURS}, CGROUPS.get) is bare


def test_read_cgroup_of_this_process_and_of_none(tmp_path: Path) -> None:
    assert read_cgroup(os.getpid()) is not None
    assert read_cgroup(os.getpid(), proc=tmp_path) is None
