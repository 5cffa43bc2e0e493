from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml

from agent.projects import ProjectError, ProjectStore, adapt, expand

COMPOSE = """
services:
  llm:
    image: localhost/gpufleet-test:latest
    deploy:
      resources:
        reservations:
          devices:
            - driver: nvidia
              device_ids: ["0", "1"]
              capabilities: [gpu]
  small:
    image: localhost/gpufleet-test:latest
    environment: [A=1]
    deploy: {resources: {reservations: {devices: [{driver: nvidia, count: 1}]}}}
"""


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize("name", ["../evil", "a/b", "", "UPPER", ".hidden", "x" * 64, "a b"])
def test_hostile_names_are_refused_and_nothing_is_written(tmp_path: Path, name: str) -> None:
    store = ProjectStore(tmp_path / "state")
    with pytest.raises(ProjectError, match="refused project name"):
        store.write(name, COMPOSE, digest(COMPOSE))
    assert not any(tmp_path.rglob("compose.yaml"))


def test_write_checks_digest_and_yaml(tmp_path: Path) -> None:
    store = ProjectStore(tmp_path)
    with pytest.raises(ProjectError, match="does not match its digest"):
        store.write("coder", COMPOSE, "0" * 64)
    with pytest.raises(ProjectError, match="needs a services mapping"):
        store.write("coder", "just text", digest("just text"))
    project = store.write("coder", COMPOSE, digest(COMPOSE))
    assert project.digest() == ""  # until its compose up succeeded
    project.record(digest(COMPOSE))
    assert project.digest() == digest(COMPOSE)
    assert [p.name for p in store.known()] == ["coder"]
    assert (project.directory.stat().st_mode & 0o777) == 0o700


def test_runtimes() -> None:
    document = yaml.safe_load(COMPOSE)
    assert adapt(document, "cdi") == document
    none = adapt(document, "none")["services"]
    assert none["llm"]["environment"]["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert none["small"]["environment"] == {"A": "1", "NVIDIA_VISIBLE_DEVICES": "0",
                                            "CUDA_VISIBLE_DEVICES": "0"}  # fmt: skip
    assert "devices" not in none["llm"]["deploy"]["resources"]["reservations"]
    amd = adapt(document, "amd")["services"]["llm"]
    assert amd["devices"] == ["/dev/kfd", "/dev/dri"]
    assert amd["environment"]["ROCR_VISIBLE_DEVICES"] == "0,1"
    with pytest.raises(ProjectError, match="unknown GPU runtime"):
        adapt(document, "tpu")


def test_expand() -> None:
    env = {"PORT": "8081"}
    assert expand("http://127.0.0.1:${PORT:-8000}/health", env) == "http://127.0.0.1:8081/health"
    assert expand("http://127.0.0.1:${OTHER:-8000}/x", env) == "http://127.0.0.1:8000/x"
    assert expand("${PORT}", env) == "8081"
