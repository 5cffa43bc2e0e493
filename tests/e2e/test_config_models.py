"""A configuration that references a model definition, switched through a real hub and agent
with real Podman: the command line the hub generates from the model is read back from inside
the container, and editing the model file makes the next switch `changed`."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import podman
from tests.support.fleet import Fleet
from tests.support.procs import REPO, Cluster

# The test image cannot run vLLM: its entrypoint writes the arguments it is given (the
# generated command) where busybox httpd serves them, with /health and the drain metric.
CONFIG = """\
x-gpufleet:
  description: A stand-in vLLM server started from a model definition
  use_case: tests
  services:
    llm:
      model_ref: stand-in
      health: {url: "http://127.0.0.1:${WEB_PORT}/health", timeout: 30, interval: 0.2}
services:
  llm:
    image: localhost/gpufleet-test:latest
    entrypoint:
      - sh
      - -c
      - >-
        mkdir -p /srv && printf '%s\\n' "$@" > /srv/args && env > /srv/env &&
        echo 'vllm:num_requests_running 0' > /srv/metrics && echo ok > /srv/health &&
        httpd -p 8000 -h /srv && while :; do sleep 3600; done
      - vllm
    ports: ["127.0.0.1:${WEB_PORT}:8000"]
    stop_signal: SIGKILL
    deploy:
      resources:
        reservations:
          devices:
            - driver: nvidia
              device_ids: ["0"]
              capabilities: [gpu]
"""
MODEL = """\
name: stand-in
engine: vllm
source: {hf: {repo: org/stand-in}}
vllm:
  max_model_len: 1024
  env: {STAND_IN: "yes"}
vram_gb: 1
"""


@pytest.fixture
def fleet(tmp_path: Path, image: str) -> Iterator[Fleet]:
    configs = tmp_path / "configs"
    (configs / "models").mkdir(parents=True)
    (configs / "served.yaml").write_text(CONFIG)
    (configs / "models" / "stand-in.yaml").write_text(MODEL)
    fleet = Fleet(tmp_path)
    fleet.cluster = Cluster(tmp_path, None, heartbeat=0.5, configs=configs,
                            hub_args=("--models", str(configs / "models")))  # fmt: skip
    fleet.cluster.start_hub()
    try:
        yield fleet
    finally:
        fleet.cluster.close()
        podman.remove_projects(f"gf-{fleet.prefix}")


def served(fleet: Fleet, path: str) -> list[str]:
    url = f"http://127.0.0.1:{fleet.ports['a']}/{path}"
    with urllib.request.urlopen(url, timeout=5) as reply:
        return [line for line in reply.read().decode().splitlines() if line]


def result(operation: dict[str, Any]) -> str:
    assert operation["status"] == "succeeded", operation["nodes"][0]["message"]
    return str(operation["nodes"][0]["result"])


def test_the_generated_command_runs_and_a_model_edit_is_a_change(fleet: Fleet) -> None:
    listed = fleet.cluster.json("configs")
    assert listed["errors"] == []
    [llm] = listed["configurations"][0]["services"]
    assert (llm["model_ref"], llm["vram_gb"], llm["drains"]) == ("stand-in", 1, True)
    shown = fleet.hubctl("configs")
    assert "llm (1 GB x1, model stand-in)" in shown.stdout
    valid = fleet.hubctl("configs", "validate", str(fleet.cluster.tmp / "configs" / "served.yaml"))
    assert valid.returncode == 0 and "served (llm (model stand-in))" in valid.stdout

    fleet.agent("a")
    fleet.cluster.wait_status({fleet.node("a"): "ready"})
    assert result(fleet.switch("served", "a")) == "changed"
    assert served(fleet, "args") == [
        "--model=org/stand-in", "--served-model-name=stand-in", "--max-model-len=1024",
        "--host=0.0.0.0", "--port=8000",
    ]  # fmt: skip
    assert "STAND_IN=yes" in served(fleet, "env")

    assert result(fleet.switch("served", "a")) == "ok"  # nothing changed: nothing restarted
    models = fleet.cluster.tmp / "configs" / "models" / "stand-in.yaml"
    models.write_text(MODEL.replace("1024", "2048"))
    assert result(fleet.switch("served", "a")) == "changed"
    assert "--max-model-len=2048" in served(fleet, "args")
    assert result(fleet.switch("served", "a")) == "ok"


def test_a_bad_reference_is_one_line_and_lists_the_others(fleet: Fleet, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(CONFIG.replace("model_ref: stand-in", "model_ref: stand-on"))
    bad = fleet.hubctl("configs", "validate", str(broken), "--json")
    found = json.loads(bad.stdout)
    assert bad.returncode == 1 and len(found["problems"]) == 1
    assert "x-gpufleet.services.llm.model_ref: model 'stand-on' not found; did you mean " \
           "'stand-in'?" in found["problems"][0]  # fmt: skip
    (fleet.cluster.tmp / "configs" / "broken.yaml").write_text(broken.read_text())
    listed = fleet.cluster.json("configs")
    assert [c["name"] for c in listed["configurations"]] == ["served"]
    [line] = listed["errors"]
    assert "broken.yaml" in line and "'stand-on' not found" in line


def test_every_shipped_configuration_validates_clean_through_a_hub(tmp_path: Path) -> None:
    shipped = REPO / "configs"
    cluster = Cluster(tmp_path, None, configs=shipped,
                      hub_args=("--models", str(shipped / "models")))  # fmt: skip
    cluster.start_hub()
    try:
        files = sorted(str(path) for path in shipped.glob("*.yaml"))
        checked = cluster.hubctl("configs", "validate", *files, "--json", check=False)
        found = json.loads(checked.stdout)
        assert checked.returncode == 0 and found["valid"] and found["problems"] == [], found
        assert found["files"][files.index(str(shipped / "chat-llama31.yaml"))]["models"] == {
            "llm": "llama31-8b-instruct"
        }
        listed = cluster.json("configs")
        assert listed["errors"] == [] and len(listed["configurations"]) == len(files)
    finally:
        cluster.close()
