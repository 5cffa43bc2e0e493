"""A llama.cpp model deployment through a real hub, a real agent and hubctl, with a stand-in
`llama_cpp.server` (a stdlib HTTP server) in a stand-in llama-cpp-python environment, so the
agent's host process path runs end to end where the llama extra is not installed
(tests/e2e/test_model_switch.py runs the real server): switched on, ready by its /v1/models
check, its log read, the agent restarted while it runs (adopted: same pid, never restarted),
stopped (the server gone)."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.procs import Cluster, free_port, wait_until

STANDIN = r"""
import argparse, http.server, json

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--host", default="127.0.0.1")
parser.add_argument("--model_alias", required=True)
args, rest = parser.parse_known_args()
print("stand-in llama_cpp.server for", args.model_alias, "with", " ".join(rest), flush=True)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"object": "list", "data": [{"id": args.model_alias}]}).encode()
        self.send_response(200 if self.path == "/v1/models" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args):
        print("request", self.command, self.path, flush=True)


http.server.HTTPServer((args.host, args.port), Handler).serve_forever()
"""
MODEL = """\
name: {name}
engine: llama-cpp
source: {{path: {path}}}
llama_cpp: {{backend: cpu, n_ctx: 256}}
vram_gb: 1
"""


def standin_environment(tmp: Path) -> Path:
    """DIR/bin/python runs this interpreter with a stand-in llama_cpp package first."""
    directory = tmp / "llama-standin"
    package = directory / "lib" / "llama_cpp" / "server"
    package.mkdir(parents=True)
    (package.parent / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(STANDIN)
    (directory / "bin").mkdir()
    python = directory / "bin" / "python"
    python.write_text(f'#!/bin/sh\nPYTHONPATH="{directory / "lib"}" exec {sys.executable} "$@"\n')
    python.chmod(0o755)
    return directory


def servers(port: int) -> list[int]:
    """Pids of the stand-in servers for `port` (not their supervisors)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0") if entry.name.isdigit() else []
        except OSError:
            continue
        if argv[1:3] == [b"-m", b"llama_cpp.server"] and f"--port={port}".encode() in argv:
            found.append(int(entry.name))
    return found


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[tuple[Cluster, int]]:
    models = tmp_path / "models"
    models.mkdir()
    (tmp_path / "configs").mkdir()
    weights = tmp_path / "tiny.gguf"
    weights.write_bytes(b"not read by the stand-in")
    (models / "tiny.yaml").write_text(MODEL.format(name="tiny", path=weights))
    cluster = Cluster(tmp_path, None, heartbeat=0.5, configs=tmp_path / "configs",
                      hub_args=("--models", str(models)))  # fmt: skip
    cluster.start_hub()
    port = free_port()
    try:
        yield cluster, port
    finally:
        cluster.close()
        for pid in servers(port):  # a server outlives its agent by design
            os.kill(pid, signal.SIGKILL)


def hubctl_json(cluster: Cluster, *args: str) -> Any:
    done = cluster.hubctl(*args, "--json", check=False)
    assert "Traceback" not in done.stderr and done.stdout, done.stderr
    return json.loads(done.stdout)


def test_a_model_server_is_started_adopted_after_an_agent_restart_and_stopped(
    tmp_path: Path, hub: tuple[Cluster, int]
) -> None:
    cluster, port = hub
    llama = standin_environment(tmp_path)
    agent = cluster.agent("node-a", extra=["--gpu-probe", "none", "--llama-env", f"cpu={llama}"])
    agent.start()
    cluster.wait_status({"node-a": "ready"})

    switched = hubctl_json(cluster, "models", "switch", "tiny", "--node", "node-a",
                           "--port", str(port))  # fmt: skip
    assert switched["status"] == "succeeded", switched
    [server] = servers(port)
    [running] = hubctl_json(cluster, "models", "running")
    assert (running["model"], running["state"], running["project"]) == ("tiny", "ready",
                                                                        "model-tiny")  # fmt: skip
    logs = cluster.hubctl("models", "logs", "tiny", "--node", "node-a", check=False)
    assert logs.returncode == 0, logs.stderr
    assert "stand-in llama_cpp.server for tiny" in logs.stdout
    assert "request GET /v1/models" in logs.stdout  # the health checks, from the log file

    assert agent.terminate() == 0  # the agent goes; the server stays
    assert servers(port) == [server]
    cluster.wait_status({"node-a": "down"})
    agent.start()
    cluster.wait_status({"node-a": "ready"})
    assert servers(port) == [server]  # adopted, not restarted
    assert "host process model-tiny runs as pid" in agent.log()
    wait_until(lambda: [(r["model"], r["state"]) for r in hubctl_json(
        cluster, "models", "running")] == [("tiny", "ready")], 20, "tiny ready again")  # fmt: skip
    again = hubctl_json(cluster, "models", "switch", "tiny", "--node", "node-a",
                        "--port", str(port))  # fmt: skip
    assert again["status"] == "succeeded" and again["nodes"][0]["result"] == "ok", again
    assert servers(port) == [server]

    stopped = hubctl_json(cluster, "models", "stop", "tiny")
    assert stopped["status"] == "succeeded" and stopped["nodes"][0]["result"] == "changed"
    wait_until(lambda: not servers(port), 10, "the server gone")
    assert hubctl_json(cluster, "models", "running") == []
