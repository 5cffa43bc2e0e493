"""Start and stop real gpufleet processes for tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPO = Path(__file__).resolve().parents[2]
INVENTORIES = REPO / "configs" / "inventories"
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(check: Callable[[], T | None], timeout: float, what: str, every: float = 0.1) -> T:
    """Poll `check` until it returns something truthy; fail the test naming `what`."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; last saw {last!r}")


@dataclass
class Daemon:
    """One daemon process with its output in a log file."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Daemon:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, *self.argv],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
            cwd=REPO,
        )
        log.close()
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait: the daemon must stop by itself within `timeout`."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def cleanup(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@dataclass
class Hub(Daemon):
    address: str = ""

    def wait_serving(self, timeout: float = 30.0) -> Hub:
        def serving() -> bool:
            if not self.running:
                raise AssertionError(f"hub exited early:\n{self.log()}")
            with grpc.insecure_channel(self.address) as channel:
                try:
                    reply = health_pb2_grpc.HealthStub(channel).Check(
                        health_pb2.HealthCheckRequest(), timeout=1.0
                    )
                except grpc.RpcError:
                    return False
                return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

        wait_until(serving, timeout, f"hub on {self.address} to serve")
        return self


class Cluster:
    """A hub and any number of agents, all real processes, cleaned up at the end."""

    def __init__(
        self, tmp: Path, db_url: str | None, heartbeat: float = 0.5, configs: Path | None = None
    ) -> None:
        self.tmp = tmp
        self.configs = configs
        self.db_url = db_url
        self.heartbeat = heartbeat
        self.address = f"127.0.0.1:{free_port()}"
        self.http = f"127.0.0.1:{free_port()}"
        self.daemons: list[Daemon] = []
        self.hub = self._new_hub()

    def _new_hub(self) -> Hub:
        argv = [
            "-m",
            "hub",
            "--listen",
            self.address,
            "--http",
            self.http,
            "--state-dir",
            str(self.tmp / "hub"),
            "--heartbeat-interval",
            str(self.heartbeat),
            "--grace",
            "5",
        ]
        if self.db_url:
            argv += ["--db", self.db_url]
        if self.configs:
            argv += ["--configs", str(self.configs)]
        hub = Hub("hub", argv, self.tmp / "logs" / "hub.log", address=self.address)
        self.daemons.append(hub)
        return hub

    def start_hub(self) -> Hub:
        if self.hub.running:
            raise AssertionError("hub already running")
        if self.hub.process is not None:
            self.hub = self._new_hub()
        self.hub.start()
        return self.hub.wait_serving()

    def agent(
        self,
        name: str,
        inventory: str | None = None,
        labels: str = "",
        state: str | None = None,
        extra: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> Daemon:
        """An agent process (not started). `state` names its state dir (default: its name)."""
        argv = [
            "-m",
            "agent",
            "--hub",
            self.address,
            "--name",
            name,
            "--state-dir",
            str(self.tmp / "agents" / (state or name)),
        ]
        if inventory:
            argv += ["--inventory", str(INVENTORIES / inventory)]
        if labels:
            argv += ["--labels", labels]
        log = self.tmp / "logs" / f"agent-{state or name}.log"
        daemon = Daemon(f"agent-{name}", argv + (extra or []), log, env=env or {})
        self.daemons.append(daemon)
        return daemon

    def hubctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "cli", "--hub", self.address, *args],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"hubctl {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout}{result.stderr}"
            )
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.hubctl(*args, "--json").stdout)

    def statuses(self) -> dict[str, str]:
        return {node["name"]: node["status"] for node in self.json("nodes")}

    def wait_status(self, expected: dict[str, str], timeout: float = 20.0) -> None:
        def matches() -> bool:
            seen = self.statuses()
            return all(seen.get(name) == status for name, status in expected.items())

        wait_until(matches, timeout, f"node statuses {expected}", every=0.2)

    def close(self) -> None:
        for daemon in reversed(self.daemons):
            daemon.cleanup()

    def logs(self) -> str:
        return "\n".join(f"--- {d.name} ---\n{d.log()[-3000:]}" for d in self.daemons)
