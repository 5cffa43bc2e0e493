"""`hubctl models switch-backend` through a real hub and a real agent process (issue 15), over
the Models service's gRPC (SwitchBackend, ListModels, GetModel) as hubctl calls it.

The agent's state dir holds llama-cpp-python environments it reports to the hub as ready: the
session's real CPU build (tests/support/envs.py, `cpu_env`) as cpu-0.3.36, and the same build
again as vulkan-0.3.36, its env.json saying backend vulkan: a process started from it really
runs (on the CPU, which is what that build does), which is all the hub's switching needs to be
seen (the process's environment, its arguments, the association). A real Vulkan build is
tests/e2e/test_envs_cluster.py's. cuda-0.3.36 is an environment whose python exits at once, so
that a switch to it fails and rolls back; ROCm is not on this machine, so a switch to it must
build it first and the build fails in preflight (no hipcc).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from gpufleet.v1 import hub_pb2, hub_pb2_grpc, models_pb2, models_pb2_grpc
from tests.conftest import need
from tests.e2e.test_model_switch import chat, servers
from tests.support import podman
from tests.support.envs import BuiltEnv
from tests.support.procs import Cluster, free_port, wait_until

MODELS = """\
name: tiny
engine: llama-cpp
source: {{path: {path}}}
llama_cpp: {{backend: cpu, n_ctx: 256}}
---
name: coder
engine: vllm
source: {{hf: {{repo: Org/Coder}}}}
vram_gb: 40
"""
VERSION = "0.3.36"


def environment(envs: Path, source: Path, backend: str, python: str = "") -> Path:
    """ENVS/BACKEND-0.3.36: the environment `source` under another name and backend (its
    packages linked, not copied); with `python`, bin/python is that script instead."""
    name = f"{backend}-{VERSION}"
    directory = envs / name
    (directory / "bin").mkdir(parents=True)
    for entry in ("lib", "include", "pyvenv.cfg"):
        (directory / entry).symlink_to(source / entry)
    interpreter = directory / "bin" / "python"
    if python:
        interpreter.write_text(python)
        interpreter.chmod(0o755)
    else:
        # The interpreter itself: a venv's bin/python may be a relative link (python3).
        interpreter.symlink_to(os.path.realpath(source / "bin" / "python"))
    record = json.loads((source / "env.json").read_text())
    record.update(name=name, backend=backend, version=VERSION)
    (directory / "env.json").write_text(json.dumps(record))
    return directory


class Fleet:
    def __init__(self, cluster: Cluster, node: str, port: int) -> None:
        self.cluster, self.node, self.port = cluster, node, port
        self.channel = cluster.hub.channel()
        self.models = models_pb2_grpc.ModelsStub(self.channel)
        self.hub = hub_pb2_grpc.HubStub(self.channel)

    def switch_backend(self, backend: str, *nodes: str, version: str = "",
                       no_restart: bool = False, force: bool = False,
                       ) -> models_pb2.SwitchBackendResponse:  # fmt: skip
        targets = hub_pb2.Targets(nodes=list(nodes))
        request = models_pb2.SwitchBackendRequest(name="tiny", backend=backend, version=version,
                                                  targets=targets, no_restart=no_restart,
                                                  force=force)  # fmt: skip
        reply: models_pb2.SwitchBackendResponse = self.models.SwitchBackend(request, timeout=30)
        return reply

    def refused(self, backend: str, *nodes: str, name: str = "tiny",
                version: str = "") -> tuple[grpc.StatusCode, str]:  # fmt: skip
        request = models_pb2.SwitchBackendRequest(name=name, backend=backend, version=version,
                                                  targets=hub_pb2.Targets(nodes=list(nodes)),
                                                  force=True)  # fmt: skip
        with pytest.raises(grpc.RpcError) as error:
            self.models.SwitchBackend(request, timeout=30)
        return error.value.code(), str(error.value.details())

    def wait(self, operation_id: str) -> hub_pb2.Operation:
        for event in self.hub.WatchOperation(hub_pb2.WatchOperationRequest(id=operation_id),
                                             timeout=300):  # fmt: skip
            if event.HasField("operation") and event.operation.status != "running":
                found: hub_pb2.Operation = event.operation
                return found
        last: hub_pb2.Operation = self.hub.GetOperation(
            hub_pb2.GetOperationRequest(id=operation_id, with_events=True))  # fmt: skip
        return last

    def shown(self) -> models_pb2.ModelInfo:
        reply = self.models.GetModel(models_pb2.GetModelRequest(name="tiny"), timeout=30)
        found: models_pb2.ModelInfo = reply.model
        return found

    def listed(self) -> models_pb2.ModelInfo:
        reply = self.models.ListModels(models_pb2.ListModelsRequest(), timeout=30)
        found: list[models_pb2.ModelInfo] = [m for m in reply.models if m.name == "tiny"]
        return found[0]

    def runs_from(self) -> str:
        """The environment directory the model's server runs from (its argv[0])."""
        [pid] = servers(self.port)
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
        return Path(argv0).parent.parent.name


@pytest.fixture
def fleet(tmp_path: Path, cpu_env: BuiltEnv) -> Iterator[Fleet]:
    try:
        from tests.support.tiny_gguf import write_tiny_gguf
    except ImportError as exc:
        need(f"the llama extra is missing ({exc.name}): pip install -e '.[llama]'")
        raise
    models = tmp_path / "models"
    models.mkdir()
    path = write_tiny_gguf(tmp_path / "tiny.gguf", seed=1, name="tiny")
    (models / "tiny.yaml").write_text(MODELS.format(path=path))
    (tmp_path / "configs").mkdir()
    node = f"b{secrets.token_hex(3)}"
    envs = tmp_path / "agents" / node / "envs"
    environment(envs, cpu_env.directory, "cpu")
    environment(envs, cpu_env.directory, "vulkan")
    environment(envs, cpu_env.directory, "cuda", python="#!/bin/sh\necho no GPU here >&2\nexit 3\n")
    cluster = Cluster(tmp_path, None, heartbeat=0.5, configs=tmp_path / "configs",
                      hub_args=("--models", str(models)))  # fmt: skip
    port = free_port()
    try:
        cluster.start_hub()
        cluster.agent(node, extra=["--gpu-probe", "none"], env=podman.env()).start()
        cluster.wait_status({node: "ready"})
        found = Fleet(cluster, node, port)
        yield found
        found.channel.close()
    finally:
        cluster.close()
        for pid in servers(port):  # a server outlives its agent by design
            os.kill(pid, signal.SIGKILL)


def switched_to(fleet: Fleet, backend: str, force: bool = False) -> float:
    """switch-backend with the environment ready: instant, one operation that restarts the
    model on the node; seconds from the call to the model answering again."""
    began = time.monotonic()
    reply = fleet.switch_backend(backend, force=force)
    assert (reply.instant_switch, reply.environment) == (True, backend), reply
    assert list(reply.nodes) == [fleet.node] and list(reply.builds) == [] and reply.operation_id
    operation = fleet.wait(reply.operation_id)
    assert operation.status == "succeeded", operation
    assert (operation.kind, operation.configuration) == ("backend-switch", "model-tiny")
    assert chat(fleet.port, "tiny")[0] == 200
    return time.monotonic() - began


def test_a_model_switches_backend_and_back_and_every_later_start_uses_it(fleet: Fleet) -> None:
    started = fleet.models.SwitchModel(
        models_pb2.SwitchModelRequest(
            name="tiny", targets=hub_pb2.Targets(nodes=[fleet.node]), port=fleet.port
        ),
        timeout=30,
    )
    assert fleet.wait(started.id).status == "succeeded"
    assert fleet.runs_from() == f"cpu-{VERSION}"
    assert (fleet.shown().environment, fleet.shown().backend_switched) == ("cpu", False)

    # vulkan needs a GPU, and this node reported none: refused unless forced, nothing changed.
    request = models_pb2.SwitchBackendRequest(name="tiny", backend="vulkan")
    with pytest.raises(grpc.RpcError) as short:
        fleet.models.SwitchBackend(request, timeout=30)
    assert short.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "reported no GPUs" in str(short.value.details())
    assert "--force" in str(short.value.details())
    assert fleet.shown().environment == "cpu" and fleet.runs_from() == f"cpu-{VERSION}"

    took = switched_to(fleet, "vulkan", force=True)
    print(f"\nswitch-backend cpu -> vulkan: {took:.2f} s to the model answering again")
    assert fleet.runs_from() == f"vulkan-{VERSION}"
    [pid] = servers(fleet.port)
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert b"--n_gpu_layers=-1" in argv
    assert b"GGML_VK_VISIBLE_DEVICES=0" in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    for info in (fleet.shown(), fleet.listed()):
        assert (info.environment, info.backend_switched) == ("vulkan", True)

    took = switched_to(fleet, "cpu")
    print(f"switch-backend vulkan -> cpu: {took:.2f} s to the model answering again")
    assert fleet.runs_from() == f"cpu-{VERSION}"
    assert (fleet.shown().environment, fleet.shown().backend_switched) == ("cpu", False)

    # --no-restart: the association alone (the environment is ready), nothing restarted ...
    [pid] = servers(fleet.port)
    kept = fleet.switch_backend("vulkan", version=VERSION, no_restart=True)
    assert (kept.instant_switch, kept.environment, kept.operation_id) == (
        True,
        f"vulkan-{VERSION}",
        "",
    )
    assert list(kept.nodes) == [] and servers(fleet.port) == [pid]
    assert (fleet.shown().environment, fleet.shown().backend_switched) == (
        f"vulkan-{VERSION}",
        True,
    )
    # ... and the next start of the model runs from it.
    again = fleet.models.SwitchModel(models_pb2.SwitchModelRequest(
        name="tiny", targets=hub_pb2.Targets(nodes=[fleet.node]), port=fleet.port, force=True),
        timeout=30)  # fmt: skip
    assert fleet.wait(again.id).status == "succeeded"
    assert fleet.runs_from() == f"vulkan-{VERSION}" and chat(fleet.port, "tiny")[0] == 200
    switched_to(fleet, "cpu")
    assert fleet.runs_from() == f"cpu-{VERSION}" and not fleet.shown().backend_switched


def test_a_failed_switch_rolls_back_and_a_failed_build_changes_nothing(fleet: Fleet) -> None:
    started = fleet.models.SwitchModel(
        models_pb2.SwitchModelRequest(
            name="tiny", targets=hub_pb2.Targets(nodes=[fleet.node]), port=fleet.port
        ),
        timeout=30,
    )
    assert fleet.wait(started.id).status == "succeeded"

    # cuda-0.3.36 is ready by its record, but its server cannot start: the switch fails and
    # the model comes back from the cpu environment it ran from; no association.
    reply = fleet.switch_backend("cuda", force=True)
    assert reply.instant_switch and reply.operation_id
    operation = fleet.wait(reply.operation_id)
    assert operation.status == "failed", operation
    [result] = operation.nodes
    assert "rolled back to model-tiny, healthy" in result.message, result.message
    assert fleet.runs_from() == f"cpu-{VERSION}" and chat(fleet.port, "tiny")[0] == 200
    assert (fleet.shown().environment, fleet.shown().backend_switched) == ("cpu", False)

    # No ROCm environment here: built first (not instant), and the build fails in preflight.
    [pid] = servers(fleet.port)
    reply = fleet.switch_backend("rocm", fleet.node, force=True)
    assert not reply.instant_switch and reply.environment == "rocm" and reply.operation_id
    assert list(reply.builds) == [f"{fleet.node} has no ready rocm environment"]
    operation = fleet.wait(reply.operation_id)
    assert operation.status == "failed", operation
    [result] = operation.nodes
    assert "hipcc" in result.message, result.message
    assert servers(fleet.port) == [pid]  # not restarted
    assert (fleet.shown().environment, fleet.shown().backend_switched) == ("cpu", False)


def test_refusals_are_one_line_and_change_nothing(fleet: Fleet) -> None:
    for backend, version, nodes, name, code, words in (
        ("vulkan", "", ("ghost",), "tiny", grpc.StatusCode.NOT_FOUND, "unknown node ghost"),
        ("vulkan", "", (), "coder", grpc.StatusCode.FAILED_PRECONDITION,
         "model coder runs on vllm: switch-backend moves llama.cpp models only"),
        ("vulkan", "", (), "tiyn", grpc.StatusCode.NOT_FOUND, "tiny"),
        ("metal", "", (), "tiny", grpc.StatusCode.INVALID_ARGUMENT,
         "backend 'metal' is not one of cuda, vulkan, rocm, cpu"),
        ("cpu", "latest", (), "tiny", grpc.StatusCode.INVALID_ARGUMENT, "is not a version"),
    ):  # fmt: skip
        found, message = fleet.refused(backend, *nodes, name=name, version=version)
        assert found == code and words in message and "\n" not in message, message
    assert (fleet.shown().environment, fleet.shown().backend_switched) == ("cpu", False)
    # The model runs nowhere: the association alone, at once, and back.
    reply = fleet.switch_backend("vulkan")
    assert (reply.instant_switch, reply.operation_id, list(reply.nodes)) == (True, "", [])
    wait_until(lambda: fleet.shown().backend_switched, 10, "the association written")
    assert fleet.switch_backend("cpu").operation_id == ""
    wait_until(lambda: not fleet.shown().backend_switched, 10, "the association forgotten")
