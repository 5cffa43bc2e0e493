"""Podman preflight and compose failures with real Podman: a broken host is reported to the
hub (node.preflight) and a start fails at once with the fix; a compose run that fails says its
failing podman command and error (no traceback) and leaves no pod or network behind."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.preflight import Setup, SystemHost, checks
from gpufleet.v1 import hub_pb2, hub_pb2_grpc
from tests.support import podman
from tests.support.procs import Cluster, free_port, wait_until

TEST_CONF = podman.CONTAINERS_CONF.read_text()
HEALTH = """
      health:
        url: http://127.0.0.1:${WEB_PORT}/health
        timeout: 30
        interval: 0.2
"""


def config(image: str, command: str, ports: bool = True) -> str:
    argv = json.dumps(["sh", "-c", command])
    text = ("x-gpufleet:\n  description: preflight test\n  use_case: tests\n  services:\n"
            f"    web:\n      vram_gb: 1\n{HEALTH}services:\n  web:\n    image: {image}\n"
            f"    command: {argv}\n    stop_signal: SIGKILL\n")  # fmt: skip
    return text + ('    ports: ["127.0.0.1:${WEB_PORT}:8080"]\n' if ports else "")


SERVE = "mkdir -p /srv && echo ok > /srv/health && httpd -f -p 8080 -h /srv"


def cni_conf(tmp: Path) -> Path:
    """The suite's podman settings on the CNI backend, with no plugins where it looks."""
    (tmp / "empty").mkdir(exist_ok=True)
    path = tmp / "cni.conf"
    backend = f'network_backend = "cni"\ncni_plugin_dirs = ["{tmp / "empty"}"]'
    path.write_text(TEST_CONF.replace('network_backend = "netavark"', backend))
    return path


@pytest.fixture
def site(tmp_path: Path, image: str) -> Iterator[tuple[Cluster, str]]:
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "bad-image.yaml").write_text(config("localhost/does-not-exist", "sleep 100"))
    (configs / "serve.yaml").write_text(config(image, SERVE))
    cluster = Cluster(tmp_path, None, heartbeat=0.5, configs=configs)
    prefix = f"p{secrets.token_hex(3)}"
    cluster.start_hub()
    try:
        yield cluster, prefix
    finally:
        cluster.close()
        podman.remove_projects(f"gf-{prefix}")
        for net in left(prefix)["networks"]:
            podman.podman("network", "rm", "-f", net, check=False)


def left(prefix: str) -> dict[str, list[str]]:
    """What podman still has of projects whose names start with gf-PREFIX."""
    pods = podman.podman("pod", "ps", "--format", "{{.Name}}").stdout.split()
    nets = podman.podman("network", "ls", "--format", "{{.Name}}").stdout.split()
    return {"pods": [p for p in pods if p.startswith(f"pod_gf-{prefix}")],
            "networks": [n for n in nets if n.startswith(f"gf-{prefix}")],
            "containers": [c["id"] for c in podman.containers(f"gf-{prefix}")]}  # fmt: skip


def start_agent(cluster: Cluster, node: str, env: dict[str, str], port: int) -> None:
    extra = ["--gpu-probe", "none", "--gpu-runtime", "none", "--env", f"WEB_PORT={port}"]
    cluster.agent(node, extra=extra, env=env).start()
    cluster.wait_status({node: "ready"})


def get_node(cluster: Cluster, name: str) -> hub_pb2.Node:
    with cluster.hub.channel() as channel:
        node: hub_pb2.Node = hub_pb2_grpc.HubStub(channel).GetNode(
            hub_pb2.GetNodeRequest(name=name), timeout=10
        )
        return node


def switch(cluster: Cluster, configuration: str, node: str) -> dict[str, Any]:
    done = cluster.hubctl("switch", configuration, "--node", node, "--json", check=False)
    found: dict[str, Any] = json.loads(done.stdout)
    return found


def test_the_real_host_checks(tmp_path: Path, image: str) -> None:
    """The test suite's podman setup passes; each broken setting is found, with its fix."""
    env = dict(os.environ)
    assert checks(SystemHost({**env, **podman.env()}), Setup()) == []
    cni = cni_conf(tmp_path)
    [problem] = checks(SystemHost({**env, "CONTAINERS_CONF": str(cni)}), Setup())
    assert "network backend is CNI but no CNI bridge plugin" in problem
    assert "containernetworking-plugins" in problem
    text = TEST_CONF.replace("[engine]\n", f'[engine]\nhelper_binaries_dir = ["{tmp_path}"]\n')
    (tmp_path / "helpers.conf").write_text(text)
    [problem] = checks(SystemHost({**env, "CONTAINERS_CONF": str(tmp_path / "helpers.conf")}),
                       Setup())  # fmt: skip
    assert problem.startswith("podman cannot find netavark") and "package netavark" in problem
    if shutil.which("crun") is None:
        (tmp_path / "crun.conf").write_text(TEST_CONF.replace('runtime = "runc"',
                                                              'runtime = "crun"'))  # fmt: skip
        [problem] = checks(SystemHost({**env, "CONTAINERS_CONF": str(tmp_path / "crun.conf")}),
                           Setup())  # fmt: skip
        assert problem.startswith("podman's OCI runtime crun is not installed")
    cdi = checks(SystemHost({**env, **podman.env()}), Setup("cdi", nvidia_gpus=True))
    if not any(Path(d).is_dir() and os.listdir(d) for d in ("/etc/cdi", "/var/run/cdi")):
        assert cdi and "nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml" in cdi[0]


def test_a_broken_host_is_reported_and_refuses_starts_at_once(
    site: tuple[Cluster, str], tmp_path: Path
) -> None:
    cluster, prefix = site
    node = f"{prefix}-broken"
    cni = cni_conf(tmp_path)
    start_agent(cluster, node, {"CONTAINERS_CONF": str(cni)}, free_port())
    found = wait_until(lambda: list(get_node(cluster, node).preflight), 20, "node.preflight")
    assert len(found) == 1 and "no CNI bridge plugin" in found[0]
    listed = cluster.json("nodes")  # ListNodes carries it too (hubctl prints what it shows)
    assert any(n["name"] == node for n in listed)

    result = switch(cluster, "serve", node)
    message = result["nodes"][0]["message"]
    assert result["nodes"][0]["result"] == "failed"
    assert "cannot start serve: podman's network backend is CNI" in message, message
    assert "Traceback" not in message
    assert left(prefix) == {"pods": [], "networks": [], "containers": []}
    log = cluster.daemons[-1].log()
    assert log.count("preflight: podman's network backend is CNI") == 1  # once, not per beat


def test_a_failed_compose_up_names_its_cause_and_leaves_nothing(
    site: tuple[Cluster, str],
) -> None:
    cluster, prefix = site
    node = f"{prefix}-a"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        start_agent(cluster, node, podman.env(), port)
        assert list(get_node(cluster, node).preflight) == []

        result = switch(cluster, "bad-image", node)
        message = result["nodes"][0]["message"]
        assert result["nodes"][0]["result"] == "failed", message
        assert (
            "compose up failed: podman create" in message and "localhost/does-not-exist" in message
        )
        assert "Error: " in message and "Traceback" not in message and "--label" not in message
        assert left(prefix) == {"pods": [], "networks": [], "containers": []}

        result = switch(cluster, "serve", node)  # its port is taken
        message = result["nodes"][0]["message"]
        assert "compose up failed: podman start" in message, message
        assert f"127.0.0.1:{port}: bind: address already in use" in message
        assert left(prefix) == {"pods": [], "networks": [], "containers": []}
