"""The vLLM stand-in image on real Podman: vLLM's arguments as generated from a model
definition go in as the container's command, and every endpoint a model switch relies on
answers as vLLM's would (health and the model list 503 while loading, then 200; the drain
metric counts requests in flight; /cmdline is the command read back from inside)."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.probing import in_flight
from hub.models import vllm
from hub.models.load import parse_models
from hub.models.schema import Deployment
from tests.conftest import need
from tests.support import podman, vllm_standin
from tests.support.procs import free_port, wait_until

MODEL = """\
name: stand-in
served_model_name: stand-in-chat
engine: vllm
source: {hf: {repo: org/stand-in, revision: main}}
vllm:
  max_model_len: 1024
  gpu_memory_utilization: 0.5
  enable_prefix_caching: false
  enable_auto_tool_choice: true
  tool_call_parser: hermes
  extra_args: ["--seed=7"]
vram_gb: 1
"""
LOAD_DELAY = 3


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Server:
    container: str
    url: str
    args: list[str]
    started: float

    def get(self, path: str) -> Reply:
        try:
            with urllib.request.urlopen(self.url + path, timeout=10) as reply:
                return Reply(reply.status, dict(reply.headers), reply.read())
        except urllib.error.HTTPError as exc:
            return Reply(exc.code, dict(exc.headers), exc.read())


@pytest.fixture(scope="module")
def standin_image() -> str:
    try:
        return vllm_standin.build()
    except podman.PodmanMissing as exc:
        need(str(exc))
        raise


@pytest.fixture
def server(standin_image: str) -> Iterator[Server]:
    [model] = parse_models(MODEL, Path("stand-in.yaml"))
    args = vllm.args(model, Deployment(host="0.0.0.0", port=8123))
    port = free_port()
    name = f"gf-standin-{uuid.uuid4().hex[:8]}"
    podman.podman("run", "-d", "--rm", "--name", name, "-p", f"127.0.0.1:{port}:8123",
                  "-e", f"LOAD_DELAY={LOAD_DELAY}", standin_image, *args)  # fmt: skip
    try:
        yield Server(name, f"http://127.0.0.1:{port}", args, time.monotonic())
    finally:
        podman.podman("rm", "-f", "-t", "0", name, check=False)


def answering(server: Server) -> Reply | None:
    try:
        return server.get("/cmdline")
    except OSError:
        return None  # the port is published before the server listens


def healthy(server: Server) -> Reply | None:
    reply = server.get("/health")
    return reply if reply.status == 200 else None


def test_the_generated_command_and_every_endpoint(server: Server) -> None:
    cmdline = wait_until(lambda: answering(server), 20, "the stand-in answers /cmdline")
    assert cmdline.status == 200
    assert cmdline.body.decode().splitlines() == server.args == [
        "--model=org/stand-in", "--revision=main", "--served-model-name=stand-in-chat",
        "--max-model-len=1024", "--gpu-memory-utilization=0.5", "--no-enable-prefix-caching",
        "--enable-auto-tool-choice", "--tool-call-parser=hermes", "--host=0.0.0.0",
        "--port=8123", "--seed=7",
    ]  # fmt: skip

    loading = [server.get("/health"), server.get("/v1/models")]
    assert time.monotonic() - server.started < LOAD_DELAY, "too slow to see it loading"
    assert [reply.status for reply in loading] == [503, 503]

    health = wait_until(lambda: healthy(server), 20, "/health 200 once loaded")
    assert health.body == b"" and health.headers["Content-Length"] == "0"
    listed = server.get("/v1/models")
    assert listed.status == 200 and listed.headers["Content-Type"] == "application/json"
    assert int(listed.headers["Content-Length"]) == len(listed.body)
    models: dict[str, Any] = json.loads(listed.body)
    assert [entry["id"] for entry in models["data"]] == ["stand-in-chat"]
    assert models["data"][0]["root"] == "org/stand-in"

    assert server.get("/nothing-here").status == 404
    metrics = server.get("/metrics")
    assert metrics.status == 200 and metrics.headers["Content-Type"].startswith("text/plain")
    assert in_flight(metrics.body.decode(), "vllm:num_requests_running") == 0


def test_requests_in_flight_count_and_sigterm_stops_it_at_once(server: Server) -> None:
    wait_until(lambda: answering(server), 20, "the stand-in answers /cmdline")
    worked: list[Reply] = []
    worker = threading.Thread(target=lambda: worked.append(server.get("/work?seconds=3")))
    worker.start()

    def counted() -> float | None:
        found = in_flight(server.get("/metrics").body.decode(), "vllm:num_requests_running")
        return found if found == 1 else None

    assert wait_until(counted, 10, "one request in flight") == 1
    worker.join(20)
    assert [reply.status for reply in worked] == [200]
    assert in_flight(server.get("/metrics").body.decode(), "vllm:num_requests_running") == 0

    start = time.monotonic()
    podman.podman("stop", "-t", "20", server.container)
    assert time.monotonic() - start < 5, "SIGTERM did not stop the stand-in"
