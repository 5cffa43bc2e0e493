"""hubctl usage on a real hub (a hub process and agent processes, SQLite and PostgreSQL): what
the agents report is recorded and listed, filtered by node and label, and outlives a hub
restart. (Hours fold two minutes after their samples, at the
downsampler's next tick: tests/hub/test_telemetry.py covers them.)"""

from __future__ import annotations

from typing import Any

from tests.support.procs import Cluster, wait_until


def usage(cluster: Cluster, *args: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = cluster.json("usage", "--since", "1h", "--raw", *args)
    return found


def test_the_hub_records_what_agents_report(cluster: Cluster) -> None:
    cluster.agent("n1", inventory="a5500-a400.yaml", labels="role=chat").start()
    cluster.agent("n2", inventory="a5500-a400.yaml", labels="role=coder").start()
    cluster.wait_status({"n1": "ready", "n2": "ready"})
    raw = wait_until(lambda: usage(cluster, "-n", "n1") or None, 40, "raw samples of n1")
    assert {(r["node"], r["gpu"], r["span_s"]) for r in raw} == {("n1", 0, 0), ("n1", 1, 0)}
    assert {r["memory_used_max_mb"] for r in raw if r["gpu"] == 0} == {19304}
    coder = wait_until(lambda: usage(cluster, "-l", "role=coder") or None, 40, "n2's samples")
    assert {r["node"] for r in coder} == {"n2"}
    seen = len(usage(cluster, "-n", "n1"))
    cluster.hub.terminate()  # the history outlives the hub
    cluster.start_hub()
    after = usage(cluster, "-n", "n1")
    assert len(after) >= seen >= len(raw) > 0
