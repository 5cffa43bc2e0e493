"""The agent's compose policy holds whatever the hub sends: a real hub sends a privileged
compose file to a real agent with the default policy, which refuses it with one line and
starts nothing (real Podman)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import podman
from tests.support.procs import Cluster

ROOT = """
x-gpufleet:
  description: a service that asks for the host
  use_case: tests
  services:
    web:
      vram_gb: 1
      health: {url: "http://127.0.0.1:${WEB_PORT:-1}/health", timeout: 5, interval: 0.2}
services:
  web:
    image: localhost/gpufleet-test:latest
    command: [sh, -c, "echo up > /srv/health && httpd -f -p 8080 -h /srv"]
    privileged: true
"""


@pytest.fixture
def cluster(tmp_path: Path, image: str) -> Iterator[tuple[Cluster, str]]:
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "root.yaml").write_text(ROOT)
    cluster = Cluster(tmp_path, None, heartbeat=0.5, configs=configs)
    prefix = f"p{secrets.token_hex(3)}"
    cluster.start_hub()
    try:
        yield cluster, prefix
    finally:
        cluster.close()
        podman.remove_projects(f"gf-{prefix}")


def test_a_privileged_compose_is_refused_on_the_host_and_nothing_starts(
    cluster: tuple[Cluster, str], tmp_path: Path
) -> None:
    fleet, prefix = cluster
    node = f"{prefix}-a"
    config = tmp_path / "agent.yaml"  # the agent's own settings: the default policy
    config.write_text("gpu_probe: none\ngpu_runtime: none\n")
    fleet.agent(node, extra=["--config", str(config)], env=podman.env()).start()
    fleet.wait_status({node: "ready"})

    warned = fleet.hubctl("configs", "validate", str(tmp_path / "configs" / "root.yaml"))
    assert "warning: service web: privileged: true would be refused" in warned.stdout

    done = fleet.hubctl("switch", "root", "--node", node, "--json", check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    [result] = json.loads(done.stdout)["nodes"]
    assert result["result"] == "failed"
    assert (
        f"project root: service web: privileged: true is not allowed on this host: "
        f"set allow_privileged: true in {config}"
    ) in result["message"]
    assert podman.containers(f"gf-{prefix}") == []  # nothing was started
    assert not (tmp_path / "agents" / node / "projects" / "root").exists()  # nor written
    state = {n["node"]: n for n in fleet.json("status")}[node]
    assert state["state"] != "ready"
