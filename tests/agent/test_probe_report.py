"""`gpufleet-agent probe`: memory in GiB with what is free, GPU processes, preflight lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from agent.probes import GpuInfo, GpuProcess, ProbeResult
from agent.report import as_json, as_text, memory
from tests.support.procs import REPO

A5500 = GpuInfo(0, "GPU-1", "NVIDIA RTX A5500", "nvidia", 24576, 19354, "8.6",
                processes=(GpuProcess(4242, 18432, managed=True), GpuProcess(77, 512)))  # fmt: skip


def test_memory_is_gib_of_nvml_mib_with_free() -> None:
    assert memory(A5500) == "18.9 of 24.0 GiB used, 5.1 GiB free"
    h100 = GpuInfo(0, "u", "H100", "nvidia", 81559, 0, memory_free_mb=81000)
    assert memory(h100) == "0.0 of 79.6 GiB used, 79.1 GiB free"  # NVML's free wins
    assert memory(GpuInfo(0, "u", "x", "amd", 0, 2048)) == "2.0 GiB used, total unknown"


def test_text_shows_processes_and_preflight() -> None:
    text = as_text(ProbeResult("nvml", (A5500,)), ["podman not found on PATH: install podman"])
    assert "VRAM 18.9 of 24.0 GiB used, 5.1 GiB free" in text
    assert "processes: 4242 (18.0 GiB, gpufleet), 77 (0.5 GiB)" in text
    assert text.endswith("podman preflight: 1 problem, compose runs will fail until fixed:\n"
                         "  - podman not found on PATH: install podman")  # fmt: skip
    assert as_text(ProbeResult("nvml", (A5500,)), []).endswith("podman preflight: ok (podman, "
        "podman-compose, network backend, OCI runtime, GPU devices)")  # fmt: skip
    found = as_json(ProbeResult("nvml", (A5500,)), ["x: y"])
    assert found["preflight"] == ["x: y"]
    assert found["gpus"][0]["processes"][0] == {"pid": 4242, "used_memory_mb": 18432}


def test_probe_runs_the_real_preflight(tmp_path: Path) -> None:
    """A host whose podman has no way to run containers: probe says so, with the fix."""
    conf = tmp_path / "containers.conf"
    conf.write_text('[engine]\nruntime = "no-such-runtime"\ncgroup_manager = "cgroupfs"\n'
                    'events_logger = "file"\n')  # fmt: skip
    inventory = REPO / "configs" / "inventories" / "a5500-a400.yaml"
    env = {**os.environ, "CONTAINERS_CONF": str(conf)}
    argv = [sys.executable, "-m", "agent", "probe", "--inventory", str(inventory),
            "--gpu-runtime", "none"]  # fmt: skip
    done = subprocess.run([*argv, "--json"], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=60, check=True)  # fmt: skip
    [problem] = json.loads(done.stdout)["preflight"]
    assert problem.startswith("podman's OCI runtime no-such-runtime is not installed")
    text = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO, timeout=60,
                          check=True).stdout  # fmt: skip
    assert "VRAM 18.9 of 24.0 GiB used, 5.1 GiB free" in text
    assert f"  - {problem}" in text
