"""Environment builds as operations across nodes and hub restarts (issue 15), all real: a hub,
two agent processes, hubctl, and the session's real CPU wheel in the hub's cache (so nothing is
compiled: each node installs and verifies it in seconds).

- One compile per cluster: a build on two nodes at once runs the first node alone; the second
  starts only once the first has finished (with a wheel that is not cached yet, the second
  then installs what the first uploaded).
- A build survives a hub restart: the agent finishes it and the hub learns the outcome when
  the agent says hello again; the operation that asked for it is `interrupted`.
- `hubctl envs rm` removes an environment; the node's listing no longer has it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.envs import BuiltEnv
from tests.support.procs import Cluster, wait_until

CPU = "cpu-0.3.36"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, cpu_env: BuiltEnv) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("envs-builds")
    wheels = tmp / "hub" / "wheels"
    wheels.mkdir(parents=True)
    for meta in (cpu_env.root / "wheels").glob("*/meta.json"):
        if json.loads(meta.read_text())["parts"]["backend"] == "cpu":
            shutil.copytree(meta.parent, wheels / meta.parent.name)
    (tmp / "configs").mkdir()
    found = Cluster(tmp, None, heartbeat=0.5, configs=tmp / "configs")
    found.start_hub()
    for node in ("a", "b"):
        found.agent(node, "a5500-a400.yaml").start()
    found.wait_status({"a": "ready", "b": "ready"}, timeout=60)
    try:
        yield found
    finally:
        found.close()


def envs(cluster: Cluster, node: str) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in cluster.json("envs", "--node", node)}


def test_a_build_on_two_nodes_runs_the_first_alone_then_the_other(cluster: Cluster) -> None:
    done = cluster.hubctl("envs", "build", "--backend", "cpu", "--node", "a,b", "--json")
    operation = json.loads(done.stdout)
    assert operation["status"] == "succeeded", operation
    events = cluster.json("ops", "show", operation["id"])["events"]
    ended = {e["node"]: e["seq"] for e in events if e["step"] == "result"}
    worked: dict[str, int] = {}
    for event in events:
        if event["progress"]:
            worked.setdefault(event["node"], event["seq"])
    first, second = sorted(ended, key=ended.__getitem__)
    assert ended[first] < worked[second], events  # the second began after the first ended
    for node in ("a", "b"):
        info = envs(cluster, node)[CPU]
        assert info["state"] == "ready" and info["origin"] == "cache", info


def test_a_build_finishes_across_a_hub_restart_and_rm_removes_it(cluster: Cluster) -> None:
    removed = cluster.json("envs", "rm", CPU, "--node", "a")
    assert [(r["node"], r["ok"]) for r in removed] == [("a", True)], removed
    wait_until(lambda: CPU not in envs(cluster, "a"), 10, "the listing without the environment")
    record = cluster.tmp / "agents" / "a" / "envs" / CPU / "env.json"
    assert not record.exists()

    operation = cluster.hubctl("envs", "build", "--backend", "cpu", "--node", "a",
                               "--detach").stdout.strip()  # fmt: skip

    def building() -> bool:
        try:
            return bool(json.loads(record.read_text())["state"] == "building")
        except (OSError, ValueError):
            return False

    wait_until(building, 30, "node a building its environment")
    assert cluster.hub.terminate() == 0
    cluster.start_hub()
    cluster.wait_status({"a": "ready"}, timeout=60)

    def ready() -> dict[str, Any] | None:
        found = envs(cluster, "a").get(CPU)
        return found if found is not None and found["state"] == "ready" else None

    info = wait_until(ready, 120, "the build's outcome reported after the restart")
    assert info["origin"] == "cache" and info["connected"] is True
    assert cluster.json("ops", "show", operation)["status"] == "interrupted"
