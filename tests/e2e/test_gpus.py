"""GPU discovery end to end: agents over the simulated NVML and an AMD sysfs fixture, the
hub's view through hubctl and /metrics."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import need
from tests.support.nvml import (
    FakeGpu,
    FakeHost,
    FakeNvmlUnavailable,
    build_library,
    nvml_env,
    write_host,
)
from tests.support.procs import REPO, Cluster, wait_until

# The hub store is covered on both databases elsewhere; GPU discovery runs on SQLite.
SQLITE_ONLY = pytest.mark.parametrize("db_url", [None], ids=["sqlite"])
AMD_SYSFS = REPO / "tests" / "fixtures" / "sysfs-mi50x2"
MIB = 1024 * 1024


def workstation() -> FakeHost:
    """The seed's host: A5500 for the LLM, A400 (no power sensor) for the small models."""
    return FakeHost([
        FakeGpu("NVIDIA RTX A5500", "GPU-5f2c8e1a-93b4-4d1e-b7a2-6c0e8d4f1a52", 24564, 19304,
                utilization_gpu=35, temperature_c=54, power_mw=61000, power_limit_mw=230000,
                pci_bus_id="00000000:01:00.0", processes=[(4242, 18432)]),
        FakeGpu("NVIDIA RTX A400", "GPU-a41d07c3-2e6f-4b8a-9d15-3f7c2b9e0a68", 4094, 312,
                utilization_gpu=3, temperature_c=38, power_limit_mw=50000,
                pci_bus_id="00000000:02:00.0", errors={"power_usage": "NOT_SUPPORTED"}),
    ])  # fmt: skip


def h100_host() -> FakeHost:
    return FakeHost(
        [
            FakeGpu("NVIDIA H100 80GB HBM3", f"GPU-h100-{i}", 81559, 1000 * i, (9, 0),
                    utilization_gpu=10 * i, temperature_c=30 + i, power_mw=100000 + i * 1000,
                    power_limit_mw=700000, pci_bus_id=f"00000000:{0x18 + i:02X}:00.0")
            for i in range(8)
        ],
        driver_version="560.35.03",
    )  # fmt: skip


def expected_nvml(node: str, host: FakeHost) -> list[dict[str, Any]]:
    rows = []
    for index, gpu in enumerate(host.gpus):
        rows.append({
            "node": node, "node_status": "ready", "index": index, "uuid": gpu.uuid,
            "name": gpu.name, "vendor": "nvidia", "memory_total_mb": gpu.memory_total_mb,
            "memory_used_mb": gpu.memory_used_mb,
            "compute_capability": "{}.{}".format(*gpu.compute_capability), "state": "ok",
            "memory_free_mb": gpu.memory_total_mb - gpu.memory_used_mb,
            "utilization_percent": gpu.utilization_gpu, "temperature_c": gpu.temperature_c,
            "power_draw_w": (None if "power_usage" in gpu.errors else gpu.power_mw / 1000),
            "power_limit_w": gpu.power_limit_mw / 1000, "gfx_target": None,
            "pci_bus_id": gpu.pci_bus_id, "driver_version": host.driver_version,
            "processes": [{"pid": pid, "used_memory_mb": mb} for pid, mb in gpu.processes],
        })  # fmt: skip
    return rows


EXPECTED_AMD: list[dict[str, Any]] = [
    {"node": "gpu-amd", "node_status": "ready", "index": i, "uuid": uuid,
     "name": "AMD Instinct MI50 32GB", "vendor": "amd", "memory_total_mb": 32752,
     "memory_used_mb": used, "compute_capability": None, "state": "ok",
     "memory_free_mb": 32752 - used, "utilization_percent": busy, "temperature_c": temp,
     "power_draw_w": power, "power_limit_w": 225.0, "gfx_target": "gfx906",
     "pci_bus_id": bus, "driver_version": "6.8.5", "processes": []}
    for i, (uuid, used, busy, temp, power, bus) in enumerate([
        ("GPU-0x3a2c5e1f0d4b8a96", 16384, 37, 41.0, 71.0, "0000:03:00.0"),
        ("GPU-0x7e1b9c4d2f6a0835", 16, 0, 35.0, 24.0, "0000:83:00.0"),
    ])
]  # fmt: skip


@pytest.fixture(scope="session")
def nvml_lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        return build_library(tmp_path_factory.mktemp("fake-nvml"))
    except FakeNvmlUnavailable as exc:
        need(str(exc))
        raise


def nvml_agent(cluster: Cluster, lib: Path, name: str, host: FakeHost) -> Path:
    host_file = cluster.tmp / f"{name}.nvml"
    write_host(host_file, host)
    cluster.agent(name, extra=["--gpu-probe", "nvml"], env=nvml_env(lib, host_file)).start()
    return host_file


@SQLITE_ONLY
def test_cluster_view_matches_each_simulated_host(cluster: Cluster, nvml_lib: Path) -> None:
    nvml_agent(cluster, nvml_lib, "gpu-a", workstation())
    nvml_agent(cluster, nvml_lib, "gpu-h100", h100_host())
    nvml_agent(cluster, nvml_lib, "gpu-nodriver", FakeHost([], init_error="DRIVER_NOT_LOADED"))
    amd_args = ["--gpu-probe", "amd", "--sysfs-root", str(AMD_SYSFS)]
    cluster.agent("gpu-amd", extra=amd_args).start()
    cluster.wait_status(dict.fromkeys(["gpu-a", "gpu-h100", "gpu-nodriver", "gpu-amd"], "ready"))

    by_node: dict[str, list[dict[str, Any]]] = {}
    for row in cluster.json("gpus"):
        by_node.setdefault(row["node"], []).append(row)
    assert by_node["gpu-a"] == expected_nvml("gpu-a", workstation())
    assert by_node["gpu-h100"] == expected_nvml("gpu-h100", h100_host())
    assert by_node["gpu-amd"] == EXPECTED_AMD
    assert "gpu-nodriver" not in by_node

    nodriver = cluster.json("nodes", "show", "gpu-nodriver")
    assert nodriver["gpu_count"] == 0 and nodriver["probe"] == "nvml"
    assert "NVIDIA driver not loaded" in nodriver["probe_error"]
    shown = cluster.hubctl("nodes", "show", "gpu-nodriver").stdout
    assert "No GPUs detected: NVIDIA driver not loaded" in " ".join(shown.split())

    table = cluster.hubctl("gpus").stdout
    a400_row = next(line for line in table.splitlines() if "A400" in line)
    assert "n/a" in a400_row  # power the card does not report


@SQLITE_ONLY
def test_lost_gpu_is_marked_within_two_heartbeats(cluster: Cluster, nvml_lib: Path) -> None:
    host = workstation()
    host_file = nvml_agent(cluster, nvml_lib, "gpu-a", host)
    cluster.wait_status({"gpu-a": "ready"})

    host.gpus[1].lost = True
    host.gpus[0].utilization_gpu = 80
    write_host(host_file, host)
    lost_at = time.monotonic()

    def states() -> dict[int, tuple[str, int | None]] | None:
        rows = cluster.json("gpus")
        seen = {r["index"]: (r["state"], r["utilization_percent"]) for r in rows}
        return seen if seen[1][0] == "lost" else None

    seen = wait_until(states, 10, "GPU 1 to be lost")
    # Two heartbeats, plus one hubctl round trip of slack for the polling itself.
    assert time.monotonic() - lost_at < 2 * cluster.heartbeat + 1.5
    wait_until(lambda: cluster.json("gpus")[0]["utilization_percent"] == 80, 5,
               "GPU 0's telemetry to keep flowing")  # fmt: skip
    assert seen[0][0] == "ok"
    assert "LOST" in next(line for line in cluster.hubctl("gpus").stdout.splitlines()
                          if "A400" in line)  # fmt: skip
    events = cluster.json("nodes", "show", "gpu-a")["events"]
    assert events[0]["kind"] == "gpu_lost" and host.gpus[1].uuid in events[0]["message"]

    host.gpus[1].lost = False
    write_host(host_file, host)
    wait_until(lambda: cluster.json("gpus")[1]["state"] == "ok", 10, "GPU 1 back")
    kinds = [e["kind"] for e in cluster.json("nodes", "show", "gpu-a")["events"]]
    assert kinds[:2] == ["gpu_recovered", "gpu_lost"]


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(cluster: Cluster) -> Samples:
    with urllib.request.urlopen(f"http://{cluster.http}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {
        (sample.name, tuple(sorted((k, v) for k, v in sample.labels.items() if k in
                                   ("node", "index")))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }  # fmt: skip


@SQLITE_ONLY
def test_metrics_carry_the_right_values(cluster: Cluster, nvml_lib: Path) -> None:
    nvml_agent(cluster, nvml_lib, "gpu-a", workstation())
    cluster.agent("gpu-b", "mi50x2.yaml").start()
    cluster.wait_status({"gpu-a": "ready", "gpu-b": "ready"})
    a0 = (("index", "0"), ("node", "gpu-a"))
    a1 = (("index", "1"), ("node", "gpu-a"))

    def both_connected() -> Samples | None:
        samples = scrape(cluster)
        return samples if samples.get(("gpufleet_connected_agents", ())) == 2 else None

    metrics = wait_until(both_connected, 10, "both agents in /metrics")
    assert metrics[("gpufleet_gpu_memory_used_bytes", a0)] == 19304 * MIB
    assert metrics[("gpufleet_gpu_memory_total_bytes", a0)] == 24564 * MIB
    assert metrics[("gpufleet_gpu_utilization_ratio", a0)] == pytest.approx(0.35)
    assert metrics[("gpufleet_gpu_temperature_celsius", a0)] == 54
    assert metrics[("gpufleet_gpu_power_draw_watts", a0)] == 61
    assert metrics[("gpufleet_gpu_power_limit_watts", a1)] == 50
    assert ("gpufleet_gpu_power_draw_watts", a1) not in metrics  # not supported: absent, not 0
    assert metrics[("gpufleet_gpu_lost", a1)] == 0
    assert metrics[("gpufleet_node_up", (("node", "gpu-b"),))] == 1
    assert metrics[("gpufleet_node_heartbeat_age_seconds", (("node", "gpu-a"),))] < 5
    with urllib.request.urlopen(f"http://{cluster.http}/healthz", timeout=5) as reply:
        assert reply.status == 200


def test_probe_command_prints_what_the_host_has(tmp_path: Path, nvml_lib: Path) -> None:
    import json
    import os

    host_file = tmp_path / "host.nvml"
    write_host(host_file, workstation())
    env = {**os.environ, **nvml_env(nvml_lib, host_file)}
    run = [sys.executable, "-m", "agent", "probe"]
    result = subprocess.run([*run, "--json"], capture_output=True, text=True, env=env, check=True)
    found = json.loads(result.stdout)
    assert found["probe"] == "nvml" and found["error"] is None
    assert [g["name"] for g in found["gpus"]] == ["NVIDIA RTX A5500", "NVIDIA RTX A400"]
    assert found["gpus"][0]["processes"] == [{"pid": 4242, "used_memory_mb": 18432}]
    assert found["gpus"][1]["power_draw_w"] is None
    text = subprocess.run(run, capture_output=True, text=True, env=env, check=True).stdout
    assert "driver 550.54.15" in text and "power n/a/50 W" in text

    write_host(host_file, FakeHost([], init_error="DRIVER_NOT_LOADED"))
    text = subprocess.run(run, capture_output=True, text=True, env=env, check=True).stdout
    assert "No GPUs detected" in text and "NVIDIA driver not loaded" in text


def test_missing_nvml_library_is_reported_not_fatal(tmp_path: Path) -> None:
    import ctypes.util

    if ctypes.util.find_library("nvidia-ml"):
        pytest.skip("this host has a real libnvidia-ml: a missing library cannot be simulated")
    run = [sys.executable, "-m", "agent", "probe", "--gpu-probe", "nvml"]
    result = subprocess.run(run, capture_output=True, text=True, check=True, cwd=REPO)
    assert "No GPUs detected: NVML library not found (libnvidia-ml.so.1)" in result.stdout
