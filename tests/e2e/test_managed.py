"""GPU processes that gpufleet started, end to end: a real container's host pid in the
simulated NVML's process list is reported managed by the agent and kept so by the hub; a
host process and a vanished pid stay foreign."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpufleet.v1 import hub_pb2, hub_pb2_grpc
from tests.conftest import need
from tests.e2e.test_preflight import SERVE, config, left
from tests.support import podman
from tests.support.nvml import (
    FakeGpu,
    FakeHost,
    FakeNvmlUnavailable,
    build_library,
    nvml_env,
    write_host,
)
from tests.support.procs import Cluster, free_port, wait_until

GONE_PID = 4_000_000  # above any pid this host hands out (pid_max is at most 4194304)


def host(processes: list[tuple[int, int]]) -> FakeHost:
    return FakeHost([FakeGpu("NVIDIA RTX A5500", "GPU-5f2c8e1a", 24564, 19304,
                             processes=processes)])  # fmt: skip


@pytest.fixture
def cluster(tmp_path: Path, image: str) -> Iterator[Cluster]:
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "serve.yaml").write_text(config(image, SERVE))
    found = Cluster(tmp_path, None, heartbeat=0.5, configs=configs)
    found.start_hub()
    try:
        yield found
    finally:
        found.close()


def processes(cluster: Cluster, node: str) -> dict[int, tuple[int, bool]]:
    with cluster.hub.channel() as channel:
        found = hub_pb2_grpc.HubStub(channel).GetNode(hub_pb2.GetNodeRequest(name=node), timeout=10)
    return {p.pid: (p.used_memory_mb, p.managed) for gpu in found.gpus for p in gpu.processes}


def test_a_container_of_ours_is_managed_and_a_host_process_is_not(
    cluster: Cluster, tmp_path: Path
) -> None:
    try:
        library = build_library(tmp_path / "nvml")
    except FakeNvmlUnavailable as exc:
        need(str(exc))
    host_file = tmp_path / "nvml-host.txt"
    write_host(host_file, host([]))
    node = f"m{secrets.token_hex(3)}-a"
    extra = ["--gpu-probe", "nvml", "--gpu-runtime", "none", "--env", f"WEB_PORT={free_port()}"]
    cluster.agent(node, extra=extra, env={**podman.env(), **nvml_env(library, host_file)}).start()
    try:
        cluster.wait_status({node: "ready"})
        switched = cluster.hubctl("switch", "serve", "--node", node, check=False)
        assert switched.returncode == 0, switched.stdout + switched.stderr
        [container] = podman.containers(f"gf-{node}")
        pid = int(podman.podman("inspect", "-f", "{{.State.Pid}}", container["id"]).stdout)
        assert pid > 0
        foreign = os.getpid()  # a host process: this test
        write_host(host_file, host([(pid, 18432), (foreign, 512), (GONE_PID, 64)]))
        expected = {pid: (18432, True), foreign: (512, False), GONE_PID: (64, False)}
        wait_until(lambda: processes(cluster, node) == expected, 20,
                   f"GPU processes {expected} at the hub")  # fmt: skip
    finally:
        podman.remove_projects(f"gf-{node}")
        for network in left(node)["networks"]:
            podman.podman("network", "rm", "-f", network, check=False)
