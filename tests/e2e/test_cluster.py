"""Hub and agents as real processes over gRPC on loopback, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from typing import Any

import yaml

from tests.support.procs import INVENTORIES, Cluster

HOSTS = {"gpu-a": "a5500-a400.yaml", "gpu-b": "mi50x2.yaml", "gpu-c": "h100x8.yaml"}
OPTIONAL_FIELDS = [
    "memory_free_mb", "utilization_percent", "temperature_c", "power_draw_w", "power_limit_w",
    "gfx_target", "pci_bus_id", "driver_version",
]  # fmt: skip
LABELS = {"gpu-a": "role=chat", "gpu-b": "role=coder,zone=rack2", "gpu-c": ""}


def expected_gpus() -> list[dict[str, Any]]:
    rows = []
    for node, inventory in sorted(HOSTS.items()):
        for gpu in yaml.safe_load((INVENTORIES / inventory).read_text())["gpus"]:
            rows.append(
                {
                    "node": node,
                    "index": gpu["index"],
                    "uuid": gpu["uuid"],
                    "name": gpu["name"],
                    "vendor": gpu["vendor"],
                    "memory_total_mb": gpu["memory_total_mb"],
                    "memory_used_mb": gpu.get("memory_used_mb", 0),
                    "compute_capability": gpu.get("compute_capability"),
                    # A static inventory reports no telemetry: n/a, not zero.
                    **dict.fromkeys(OPTIONAL_FIELDS),
                    "state": "ok",
                    "processes": [],
                }
            )
    return rows


def start_three(cluster: Cluster) -> dict[str, Any]:
    agents = {
        name: cluster.agent(name, inventory, LABELS[name]).start()
        for name, inventory in HOSTS.items()
    }
    cluster.wait_status(dict.fromkeys(HOSTS, "ready"))
    return agents


def gpus_without_status(cluster: Cluster) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k != "node_status"} for row in cluster.json("gpus")]


def test_three_agents_show_their_nodes_and_exactly_their_gpus(cluster: Cluster) -> None:
    start_three(cluster)
    nodes = {node["name"]: node for node in cluster.json("nodes")}
    assert sorted(nodes) == sorted(HOSTS)
    assert nodes["gpu-a"]["labels"] == {"role": "chat"}
    assert nodes["gpu-b"]["labels"] == {"role": "coder", "zone": "rack2"}
    assert {name: node["gpu_count"] for name, node in nodes.items()} == {
        "gpu-a": 2,
        "gpu-b": 2,
        "gpu-c": 8,
    }
    assert all(node["status"] == "ready" and node["last_seen"] for node in nodes.values())
    assert gpus_without_status(cluster) == expected_gpus()

    shown = cluster.json("nodes", "show", "gpu-b")
    assert [g["name"] for g in shown["gpus"]] == ["AMD Instinct MI50 32GB"] * 2
    table = cluster.hubctl("gpus").stdout
    assert "NVIDIA H100 80GB HBM3" in table and "GB" in table and "█" in table


def test_killed_agent_goes_down_within_three_heartbeats_and_back(cluster: Cluster) -> None:
    agents = start_three(cluster)
    agents["gpu-b"].kill()  # SIGKILL: no goodbye, the hub must notice by itself
    killed_at = time.monotonic()
    cluster.wait_status({"gpu-b": "down"}, timeout=10)
    # 3 intervals, plus the watcher's tick and one hubctl round trip of slack.
    assert time.monotonic() - killed_at < 3 * cluster.heartbeat + 2.0
    assert cluster.statuses() == {"gpu-a": "ready", "gpu-b": "down", "gpu-c": "ready"}

    agents["gpu-b"].start()
    cluster.wait_status({"gpu-b": "ready"})


def test_hub_restart_agents_reconnect_and_state_persists(cluster: Cluster) -> None:
    agents = start_three(cluster)
    before = gpus_without_status(cluster)
    assert cluster.hub.terminate() == 0  # SIGTERM: clean stop within the grace period
    agents["gpu-c"].kill()  # goes away while the hub is down
    cluster.start_hub()
    cluster.wait_status({"gpu-a": "ready", "gpu-b": "ready"}, timeout=30)
    assert cluster.statuses()["gpu-c"] == "down"
    assert gpus_without_status(cluster) == before  # gpu-c's GPUs came from the database
    assert all(a.running for name, a in agents.items() if name != "gpu-c")
    assert "hub said goodbye" in agents["gpu-a"].log()


def test_second_host_cannot_enroll_under_an_enrolled_name(cluster: Cluster) -> None:
    first = cluster.agent("gpu-a", "a5500-a400.yaml").start()
    cluster.wait_status({"gpu-a": "ready"})
    address = cluster.json("nodes", "show", "gpu-a")["address"]

    # Another host with a valid token of its own still cannot take gpu-a's name.
    impostor = cluster.agent("gpu-a", "h100x8.yaml", state="impostor").start()
    assert impostor.process is not None and impostor.process.wait(20) == 2
    last = impostor.log().strip().splitlines()[-1]
    assert last.startswith("gpufleet-agent: the hub refused to enroll: node/gpu-a is already "
                           "enrolled; remove it first"), last  # fmt: skip
    assert "Traceback" not in impostor.log()

    shown = cluster.json("nodes", "show", "gpu-a")
    assert shown["status"] == "ready" and shown["address"] == address
    assert [g["name"] for g in shown["gpus"]] == ["NVIDIA RTX A5500", "NVIDIA RTX A400"]
    assert first.running


def test_agent_stop_marks_node_down_at_once_and_exits_cleanly(cluster: Cluster) -> None:
    agent = cluster.agent("gpu-a", "a5500-a400.yaml").start()
    cluster.wait_status({"gpu-a": "ready"})
    assert agent.terminate(timeout=10) == 0
    cluster.wait_status({"gpu-a": "down"}, timeout=2)


def test_host_without_gpus_shows_honestly(cluster: Cluster) -> None:
    cluster.agent("cpu-1", extra=["--gpu-probe", "none"]).start()
    cluster.wait_status({"cpu-1": "ready"})
    shown = cluster.json("nodes", "show", "cpu-1")
    assert shown["gpu_count"] == 0 and shown["gpus"] == [] and shown["probe"] == "none"
    assert "No GPUs detected" in cluster.hubctl("nodes", "show", "cpu-1").stdout
