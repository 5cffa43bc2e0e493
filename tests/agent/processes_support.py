"""A stand-in model server and a fake llama-cpp-python environment for host process tests.

The environment is a directory whose bin/python is this interpreter; the server is a stdlib
HTTP server that answers /v1/models with an OpenAI model list and prints lines as a model
server does. Nothing of the agent is replaced: the tests drive the real supervisor, tasks and
monitor over real processes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

from google.protobuf.duration_pb2 import Duration

from agent.compose import Completed, Podman
from agent.probes import NoProbe
from agent.processes import Processes
from agent.projects import ProjectStore
from agent.tasks.context import TaskContext
from gpufleet import process
from gpufleet.health import HealthCheck
from gpufleet.v1 import agent_link_pb2 as pb

SERVER = r"""
import argparse, http.server, json, os, signal, sys

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--model", default="tiny")
parser.add_argument("--lines", type=int, default=3)
parser.add_argument("--ignore-term", action="store_true")
parser.add_argument("--exit", type=int)
args = parser.parse_args()
if args.ignore_term:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
for number in range(args.lines):
    print(f"line {number:04d} of {args.model}", flush=True)
print("greeting:", os.environ.get("GREETING", "none"), file=sys.stderr, flush=True)
if args.exit is not None:
    sys.exit(args.exit)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path != "/v1/models":
            self.send_error(404)
            return
        body = json.dumps({"object": "list", "data": [{"id": args.model}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args):
        print("request", self.path, flush=True)


http.server.HTTPServer(("127.0.0.1", args.port), Handler).serve_forever()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environment(tmp: Path) -> Path:
    """A llama-cpp-python environment stand-in: DIR/bin/python runs this interpreter with a
    stand-in `llama_cpp.server` module (the stdlib server above) first on its path."""
    directory = tmp / "llama-cpu"
    (directory / "bin").mkdir(parents=True, exist_ok=True)
    package = directory / "standin" / "llama_cpp" / "server"
    package.mkdir(parents=True, exist_ok=True)
    (package.parent / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(SERVER)
    python = directory / "bin" / "python"
    python.write_text(f'#!/bin/sh\nPYTHONPATH={directory / "standin"} exec {sys.executable} "$@"\n')
    python.chmod(0o755)
    return directory


def spec(tmp: Path, port: int, *extra: str, model: str = "tiny",
         expect: str = "tiny") -> process.ProcessSpec:  # fmt: skip
    """What the hub would send: built and digested as the hub builds it (gpufleet.process)."""
    environment(tmp)
    args = ["-m", "llama_cpp.server", f"--port={port}", f"--model={model}", *extra]
    check = HealthCheck(f"http://127.0.0.1:{port}/v1/models", 200, 10.0, 0.2, expect)
    return process.make("server", "cpu", args, {"GREETING": "hello"}, check)


def start_request(name: str, found: process.ProcessSpec, task_id: str = "t-start",
                  digest: str | None = None) -> pb.TaskRequest:  # fmt: skip
    health = None
    if found.health is not None:
        health = health_proto(found.health)
    host = pb.HostProcess(service=found.service, environment=found.environment,
                          args=list(found.args), env=dict(found.env), health=health)  # fmt: skip
    digest = found.digest() if digest is None else digest
    return pb.TaskRequest(task_id=task_id, start_project=pb.StartProject(
        project=name, digest=digest, process=host))  # fmt: skip


def health_proto(check: HealthCheck, service: str = "server") -> pb.HealthCheck:
    timeout, interval = Duration(), Duration()
    timeout.FromNanoseconds(int(check.timeout_s * 1e9))
    interval.FromNanoseconds(int(check.interval_s * 1e9))
    return pb.HealthCheck(service=service, url=check.url, expect_status=check.expect_status,
                          timeout=timeout, interval=interval,
                          expect_model=check.expect_model)  # fmt: skip


async def no_podman(argv: list[str], env: object, limit_s: float) -> Completed:
    raise AssertionError(f"a host process project ran podman: {argv}")


def context(state: Path, processes: Processes, llama: Path | None) -> TaskContext:
    envs = {"cpu": llama} if llama is not None else {}
    return TaskContext.create(ProjectStore(state), Podman("gpu-a", run=no_podman), NoProbe(),
                              {}, processes=processes, llama_envs=envs)  # fmt: skip


def alive(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text[text.rindex(")") + 2] not in "ZX"


def until(condition: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def server_pid(processes: Processes, name: str) -> int:
    until(lambda: (processes.directory(name) / "server.pid").is_file())
    return int((processes.directory(name) / "server.pid").read_text())


def kill_quietly(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
