"""Models switched onto nodes through a real hub, a real agent and hubctl (issue 14).

llama.cpp: two tiny random-weight GGUF models on the cpu backend, served by llama-cpp-python
(`python -m llama_cpp.server`) from this interpreter's environment as the agent's supervised
host process: switched on (it answers /v1/chat/completions), listed as running, its log read,
switched to the other (the first server gone), the agent restarted while it runs (the server
keeps its pid and keeps answering), stopped. vLLM: the stand-in image on real Podman, its
generated command read back from inside the container, and a drain on its
vllm:num_requests_running at the next switch.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import need
from tests.support import podman
from tests.support.procs import INVENTORIES, Cluster, Daemon, free_port, wait_until

LLAMA_MODEL = """\
name: {name}
engine: llama-cpp
source: {{path: {path}}}
llama_cpp: {{backend: cpu, n_ctx: 256}}
"""
GPU_MODEL = """\
name: gpu-m
engine: llama-cpp
source: {path: /srv/models/gpu-m.gguf}
llama_cpp: {backend: cuda}
vram_gb: 1
"""
VLLM_MODEL = """\
name: {name}
served_model_name: {name}-served
engine: vllm
source: {{path: /models/{name}}}
vllm: {{max_model_len: 1024, enable_prefix_caching: false}}
vram_gb: 1
"""

# A configuration whose health check never passes: a switch to it from a model rolls back to
# the model (the hub knows the model deployment the node runs).
NEVER_SERVES = """\
x-gpufleet:
  description: never healthy
  use_case: tests
  services:
    web:
      vram_gb: 1
      health: {{url: "http://127.0.0.1:1/health", timeout: 2, interval: 0.5}}
services:
  web:
    image: {image}
    command: ["--port=8000"]
    stop_signal: SIGKILL
"""


def servers(port: int) -> list[int]:
    """Pids of llama.cpp servers started for `port` (from /proc: nothing else is needed)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        # The server itself (python -m llama_cpp.server ...), not the agent's supervisor of it.
        if argv[1:3] == [b"-m", b"llama_cpp.server"] and f"--port={port}".encode() in argv:
            found.append(int(entry.name))
    return found


def get(url: str, data: dict[str, Any] | None = None, timeout: float = 30) -> tuple[int, str]:
    body = json.dumps(data).encode() if data is not None else None
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as reply:
        return reply.status, reply.read().decode()


def chat(port: int, model: str) -> tuple[int, dict[str, Any]]:
    status, text = get(f"http://127.0.0.1:{port}/v1/chat/completions",
                       {"model": model, "max_tokens": 4,
                        "messages": [{"role": "user", "content": "hello"}]})  # fmt: skip
    return status, json.loads(text)


class Models:
    """A hub with a models directory and one agent; hubctl as the operator runs it."""

    def __init__(self, tmp: Path, cluster: Cluster) -> None:
        self.tmp = tmp
        self.cluster = cluster
        self.node = f"m{secrets.token_hex(3)}"
        self.agent: Daemon | None = None

    def start_agent(self, extra: list[str]) -> Daemon:
        if self.agent is None:
            self.agent = self.cluster.agent(self.node, labels="role=chat", extra=extra,
                                            env=podman.env())  # fmt: skip
        self.agent.start()
        self.cluster.wait_status({self.node: "ready"})
        return self.agent

    def hubctl(self, *args: str) -> tuple[int, str, str]:
        done = self.cluster.hubctl(*args, check=False)
        assert "Traceback" not in done.stderr, done.stderr
        return done.returncode, done.stdout, done.stderr

    def json(self, *args: str) -> Any:
        code, out, err = self.hubctl(*args, "--json")
        assert out, err
        found = json.loads(out)
        if isinstance(found, dict):
            found["exit_code"] = code
        return found

    def switch(self, model: str, *extra: str) -> dict[str, Any]:
        found: dict[str, Any] = self.json("models", "switch", model, "--node", self.node, *extra)
        return found

    def running(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.json("models", "running")
        return found


def succeeded(operation: dict[str, Any]) -> str:
    assert operation["status"] == "succeeded", operation["nodes"]
    return str(operation["nodes"][0]["result"])


@pytest.fixture
def llama(tmp_path: Path) -> Iterator[tuple[Models, dict[str, int]]]:
    try:
        import llama_cpp.server  # noqa: F401

        from tests.support.tiny_gguf import write_tiny_gguf
    except ImportError as exc:
        need(f"the llama extra is missing ({exc.name}): pip install -e '.[llama]'")
        raise
    models = tmp_path / "models"
    models.mkdir()
    ports = {"tiny-a": free_port(), "tiny-b": free_port()}
    for seed, name in enumerate(ports):
        path = write_tiny_gguf(tmp_path / f"{name}.gguf", seed=seed, name=name)
        (models / f"{name}.yaml").write_text(LLAMA_MODEL.format(name=name, path=path))
    # A model whose server cannot start: its file is not a GGUF.
    (tmp_path / "broken.gguf").write_text("not a model\n")
    broken = LLAMA_MODEL.format(name="broken", path=tmp_path / "broken.gguf")
    (models / "broken.yaml").write_text(broken)
    cluster = Cluster(tmp_path, None, heartbeat=0.5, configs=tmp_path / "configs",
                      hub_args=("--models", str(models)))  # fmt: skip
    (tmp_path / "configs").mkdir()
    cluster.start_hub()
    fleet = Models(tmp_path, cluster)
    try:
        yield fleet, ports
    finally:
        cluster.close()
        for port in ports.values():  # a server outlives its agent by design
            for pid in servers(port):
                os.kill(pid, signal.SIGKILL)


def test_llama_cpp_models_switch_answer_survive_an_agent_restart_and_stop(
    llama: tuple[Models, dict[str, int]],
) -> None:
    fleet, ports = llama
    agent = fleet.start_agent(["--gpu-probe", "none", "--llama-env", f"cpu={sys.prefix}"])
    a, b = ports["tiny-a"], ports["tiny-b"]

    listed = {m["name"]: m for m in fleet.json("models")["models"]}
    assert listed["tiny-a"]["gpus_needed"] == 0 and listed["tiny-a"]["running_on"] == []

    assert succeeded(fleet.switch("tiny-a", "--port", str(a))) == "changed"
    status, answer = chat(a, "tiny-a")
    assert status == 200 and answer["choices"][0]["message"]["role"] == "assistant"
    [running] = fleet.running()
    assert (running["node"], running["model"], running["engine"], running["gpus"]) == (
        fleet.node, "tiny-a", "llama-cpp", [])  # fmt: skip
    assert running["state"] == "ready" and running["endpoint"].endswith(f":{a}")
    assert running["since"] is not None and running["project"] == "model-tiny-a"
    listed = {m["name"]: m for m in fleet.json("models")["models"]}
    assert listed["tiny-a"]["running_on"] == [f"{fleet.node} (cpu)"]
    code, table, _ = fleet.hubctl("models", "running")
    assert code == 0 and "tiny-a" in table and "llama-cpp" in table and "ready" in table
    code, log, err = fleet.hubctl("models", "logs", "tiny-a", "--node", fleet.node)
    assert code == 0, err
    assert "/v1/chat/completions" in log or "/v1/models" in log  # the server's request lines
    [first] = servers(a)

    assert succeeded(fleet.switch("tiny-a", "--port", str(a))) == "ok"  # runs it: nothing
    assert servers(a) == [first]

    assert fleet.json("models", "running", "-l", "role=coder") == []
    assert [r["model"] for r in fleet.json("models", "running", "tiny-a", "-l", "role=chat")] == [
        "tiny-a"]  # fmt: skip
    # By label this time: every connected node with role=chat.
    switched = fleet.json("models", "switch", "tiny-b", "-l", "role=chat", "--port", str(b))
    assert succeeded(switched) == "changed" and switched["kind"] == "model-switch"
    assert switched["configuration"] == "model-tiny-b"
    assert servers(a) == []  # tiny-a's server is gone
    status, answer = chat(b, "tiny-b")
    assert status == 200 and answer["model"] == "tiny-b"
    assert [(r["model"], r["state"]) for r in fleet.running()] == [("tiny-b", "ready")]
    [server] = servers(b)

    assert agent.terminate() == 0  # the agent goes; its model server stays
    assert servers(b) == [server] and chat(b, "tiny-b")[0] == 200
    fleet.cluster.wait_status({fleet.node: "down"})
    # Its agent gone, what its server does is not known: down, no endpoint claimed.
    [gone] = fleet.running()
    assert (gone["model"], gone["state"], gone["endpoint"]) == ("tiny-b", "down", None)
    listed = {m["name"]: m for m in fleet.json("models")["models"]}
    assert listed["tiny-b"]["running_on"] == [f"{fleet.node} (cpu, down)"]
    fleet.start_agent([])
    assert servers(b) == [server]  # adopted, not restarted
    assert chat(b, "tiny-b")[0] == 200
    wait_until(lambda: [(r["model"], r["state"]) for r in fleet.running()] == [
        ("tiny-b", "ready")], 20, "tiny-b ready again after the restart")  # fmt: skip

    # The hub restarts: what it recorded of the deployment (port, engine, since) remains.
    [before] = fleet.running()
    assert fleet.cluster.hub.terminate() == 0
    fleet.cluster.start_hub()
    fleet.cluster.wait_status({fleet.node: "ready"})
    wait_until(lambda: [(r["model"], r["state"]) for r in fleet.running()] == [
        ("tiny-b", "ready")], 20, "tiny-b ready after the hub's restart")  # fmt: skip
    assert fleet.running() == [before] and servers(b) == [server]

    code, _, err = fleet.hubctl("models", "stop", "tiny-a")
    assert code == 1 and "model tiny-a runs on no node" in err
    stopped = fleet.json("models", "stop", "tiny-b")
    assert succeeded(stopped) == "changed" and stopped["kind"] == "model-stop"
    wait_until(lambda: not servers(b), 10, "tiny-b's server gone")
    assert fleet.running() == []
    code, out, _ = fleet.hubctl("models", "running")
    assert code == 0 and out == "no model runs on any node\n"


def test_bad_model_requests_are_one_line_and_change_nothing(
    llama: tuple[Models, dict[str, int]],
) -> None:
    fleet, ports = llama
    fleet.start_agent(["--gpu-probe", "none", "--llama-env", f"cpu={sys.prefix}"])
    (fleet.tmp / "models" / "gpu-m.yaml").write_text(GPU_MODEL)
    # A node that reported no GPUs: refused unless forced, the fix on the last line.
    code, out, err = fleet.hubctl("models", "switch", "gpu-m", "--node", fleet.node)
    assert code == 1 and out == "" and err.splitlines() == [
        f"hubctl: gpu-m needs 1 GPU; {fleet.node} reported no GPUs",
        "hubctl: start it anyway with --force"]  # fmt: skip
    code, _, err = fleet.hubctl("models", "switch", "gpu-m", "--node", fleet.node,
                                "--gpu-count", "2")  # fmt: skip
    assert code == 1 and err.splitlines()[0] == (
        f"hubctl: gpu-m needs 2 GPUs (--gpu-count 2); {fleet.node} reported no GPUs")  # fmt: skip
    cases = [
        (["models", "switch", "tiny-c", "--node", fleet.node],
         "model 'tiny-c' not found; did you mean"),
        (["models", "switch", "tiny-a", "--node", fleet.node, "--gpus", "0"],
         "model 'tiny-a' runs on the cpu backend: it takes no GPU"),
        (["models", "switch", "tiny-a", "--node", fleet.node, "--gpus", "x"],
         "invalid --gpus 'x': GPU indexes such as 0,1"),
        (["models", "switch", "tiny-a", "--node", "nowhere"], "unknown node nowhere"),
        (["models", "switch", "tiny-a"], "name the nodes (--node gpu-a)"),
        # The agent answers for a project it never had (a failed switch's log is readable).
        (["models", "logs", "tiny-a", "--node", fleet.node],
         f"node {fleet.node}: no project model-tiny-a on this node: it has not run here"),
        (["models", "switch", "gpu-m", "--node", fleet.node, "--gpus", "0", "--force"],
         f"{fleet.node} has no GPU 0 (its GPUs: none): choose --gpus from those"),
        (["models", "stop", "tiny-b", "--node", fleet.node],
         f"node {fleet.node} does not run model tiny-b (it runs nothing)"),
        (["models", "running", "tiny-x"], "model 'tiny-x' not found"),
    ]  # fmt: skip
    for args, line in cases:
        code, out, err = fleet.hubctl(*args)
        assert code != 0 and out == "", (args, out)
        [shown] = err.splitlines()
        assert line in shown, (args, shown)
    assert fleet.running() == [] and servers(ports["tiny-a"]) == []
    assert fleet.json("ops") == []


@pytest.fixture
def vllm(tmp_path: Path) -> Iterator[tuple[Models, str]]:
    from tests.support import vllm_standin

    try:
        image = vllm_standin.build()
    except podman.PodmanMissing as exc:
        need(str(exc))
        raise
    models = tmp_path / "models"
    models.mkdir()
    for name in ("standin-a", "standin-b"):
        (models / f"{name}.yaml").write_text(VLLM_MODEL.format(name=name))
    big = VLLM_MODEL.format(name="standin-big").replace("vram_gb: 1", "vram_gb: 30")
    (models / "standin-big.yaml").write_text(big)
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "never-serves.yaml").write_text(NEVER_SERVES.format(image=image))
    cluster = Cluster(tmp_path, None, heartbeat=0.5, configs=tmp_path / "configs",
                      hub_args=("--models", str(models), "--vllm-image", image))  # fmt: skip
    cluster.start_hub()
    fleet = Models(tmp_path, cluster)
    try:
        yield fleet, image
    finally:
        cluster.close()
        podman.remove_projects(f"gf-{fleet.node}")


def test_a_vllm_model_runs_its_generated_command_and_drains_at_the_next_switch(
    vllm: tuple[Models, str],
) -> None:
    fleet, _ = vllm
    inventory = INVENTORIES / "demo-a5500-a400.yaml"  # GPU 0: 24 GB, GPU 1: 4 GB
    fleet.start_agent(["--inventory", str(inventory), "--gpu-runtime", "none"])
    port, other = free_port(), free_port()

    listed = {m["name"]: m for m in fleet.json("models")["models"]}
    assert (listed["standin-a"]["gpus_needed"], listed["standin-big"]["gpus_needed"]) == (1, None)
    missing = fleet.hubctl("models", "switch", "standin-a", "--node", fleet.node,
                           "--gpus", "0,1,2", "--force")  # fmt: skip
    assert missing[0] == 1 and missing[2] == (
        f"hubctl: {fleet.node} has no GPU 2 (its GPUs: 0, 1): choose --gpus from those\n"
    )
    too_big = fleet.hubctl("models", "switch", "standin-big", "--node", fleet.node)
    assert too_big[0] == 1 and too_big[2].splitlines() == [
        f"hubctl: standin-big needs 30 GB on each of GPU 0 of {fleet.node}; GPU 0: 24 GB",
        "hubctl: start it anyway with --force",
    ]  # fmt: skip
    checked = fleet.json("models", "switch", "standin-big", "--node", fleet.node, "--check")
    assert checked["check"] and checked["nodes"][0]["warnings"] == [
        f"standin-big needs 30 GB on each of GPU 0 of {fleet.node}; GPU 0: 24 GB"
    ]
    assert "would start model-standin-big" in checked["nodes"][0]["message"]
    assert fleet.running() == [] and podman.containers(f"gf-{fleet.node}") == []

    assert succeeded(fleet.switch("standin-a", "--gpus", "1", "--port", str(port))) == "changed"
    status, cmdline = get(f"http://127.0.0.1:{port}/cmdline")
    assert status == 200 and cmdline.splitlines() == [
        "--model=/models/standin-a", "--served-model-name=standin-a-served",
        "--max-model-len=1024", "--no-enable-prefix-caching", "--host=0.0.0.0", "--port=8000",
    ]  # fmt: skip
    [running] = fleet.running()
    assert (running["model"], running["engine"], running["gpus"], running["state"]) == (
        "standin-a", "vllm", [1], "ready")  # fmt: skip

    # A request in flight: the next switch drains on vllm:num_requests_running first.
    working = threading.Thread(target=get, args=(f"http://127.0.0.1:{port}/work?seconds=3",))
    working.start()
    time.sleep(0.5)
    began = time.monotonic()
    switched = fleet.switch("standin-b", "--gpus", "0", "--port", str(other))
    took = time.monotonic() - began
    working.join()
    assert succeeded(switched) == "changed" and took >= 2
    shown = fleet.json("ops", "show", switched["id"])
    drains = [e["message"] for e in shown["events"] if e["step"] == "drain"]
    assert any("drained after" in message for message in drains), drains
    assert get(f"http://127.0.0.1:{other}/v1/models")[0] == 200
    assert [(r["model"], r["gpus"]) for r in fleet.running()] == [("standin-b", [0])]

    # A configuration switch drains the model too, and brings it back when it fails.
    working = threading.Thread(target=get, args=(f"http://127.0.0.1:{other}/work?seconds=2",))
    working.start()
    time.sleep(0.5)
    code, out, err = fleet.hubctl("switch", "never-serves", "--node", fleet.node, "--json")
    working.join()
    failed = json.loads(out)
    assert code == 1 and failed["nodes"][0]["result"] == "failed", err
    assert "rolled back to model-standin-b, healthy" in failed["nodes"][0]["message"]
    shown = fleet.json("ops", "show", failed["id"])
    drains = [e["message"] for e in shown["events"] if e["step"] == "drain"]
    assert any("drained after" in message for message in drains), drains
    assert [(r["model"], r["state"], r["gpus"]) for r in fleet.running()] == [
        ("standin-b", "ready", [0])]  # fmt: skip
    assert get(f"http://127.0.0.1:{other}/v1/models")[0] == 200


def test_a_model_that_does_not_start_rolls_back_to_the_model_before(
    llama: tuple[Models, dict[str, int]],
) -> None:
    fleet, ports = llama
    fleet.start_agent(["--gpu-probe", "none", "--llama-env", f"cpu={sys.prefix}"])
    a = ports["tiny-a"]
    models = fleet.tmp / "models"
    assert succeeded(fleet.switch("tiny-a", "--port", str(a))) == "changed"
    [before] = servers(a)
    [first] = fleet.running()

    failed = fleet.switch("broken", "--port", str(ports["tiny-b"]))
    assert failed["exit_code"] == 1 and failed["nodes"][0]["result"] == "failed"
    message = failed["nodes"][0]["message"]
    assert "rolled back to model-tiny-a, healthy" in message, message
    [after] = servers(a)  # tiny-a again: regenerated from its file with its port
    assert after != before and chat(a, "tiny-a")[0] == 200
    [running] = fleet.running()
    assert (running["model"], running["state"], running["endpoint"]) == (
        "tiny-a", "ready", running["endpoint"].rpartition(":")[0] + f":{a}")  # fmt: skip
    assert running["since"] > first["since"]  # restarted by the rollback: since renewed
    # The failed start's log, although the node runs tiny-a again.
    code, log, err = fleet.hubctl("models", "logs", "broken", "--node", fleet.node)
    assert code == 0 and log.strip(), err

    # The models directory gone: a drain of the node has no definition of the model to
    # drain, and says so (no crash).
    models.rename(fleet.tmp / "models.moved")
    code, out, err = fleet.hubctl("drain", "--node", fleet.node, "--json")
    (fleet.tmp / "models.moved").rename(models)
    drained = json.loads(out)
    assert code == 0 and "no definition of model-tiny-a" in drained["nodes"][0]["message"], err

    failed = fleet.switch("broken", "--no-rollback")
    assert failed["nodes"][0]["result"] == "failed" and servers(a) == []
    [running] = fleet.running()  # it runs broken, failed: not recorded as its deployment
    assert (running["model"], running["state"]) == ("broken", "failed")
    assert (running["engine"], running["endpoint"]) == (None, None)

    # Its file removed, the model a node runs is still listed, logged and stopped.
    saved = (models / "broken.yaml").read_text()
    (models / "broken.yaml").unlink()
    assert [r["model"] for r in fleet.json("models", "running", "broken")] == ["broken"]
    code, log, err = fleet.hubctl("models", "logs", "broken", "--node", fleet.node)
    assert code == 0 and log.strip(), err
    code, _, err = fleet.hubctl("models", "logs", "brokn", "--node", fleet.node)
    assert code == 1 and "model 'brokn' not found" in err
    assert succeeded(fleet.json("models", "stop", "broken")) == "changed"
    assert fleet.running() == []
    (models / "broken.yaml").write_text(saved)
