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

from gpufleet.tls import TLS_OPTIONS
from gpufleet.v1 import trust_pb2, trust_pb2_grpc

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
    # Arguments decided at start, e.g. a fresh join token for an agent not yet enrolled.
    late_argv: Callable[[], list[str]] | None = None

    def start(self) -> Daemon:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        late = self.late_argv() if self.late_argv else []
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, *self.argv, *late],
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
    pki: Path | None = None  # None: a plaintext --insecure hub

    def channel(self) -> grpc.Channel:
        """A channel to the hub as its bootstrap admin (plaintext for an insecure hub)."""
        if self.pki is None:
            return grpc.insecure_channel(self.address)
        ca, key, cert = (self.pki / name for name in ("ca.crt", "admin.key", "admin.crt"))
        credentials = grpc.ssl_channel_credentials(
            ca.read_bytes(), key.read_bytes(), cert.read_bytes()
        )
        return grpc.secure_channel(self.address, credentials, options=TLS_OPTIONS)

    def wait_serving(self, timeout: float = 30.0) -> Hub:
        def serving() -> bool:
            if not self.running:
                raise AssertionError(f"hub exited early:\n{self.log()}")
            if self.pki is not None and not (self.pki / "admin.crt").exists():
                return False
            with self.channel() as channel:
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
        self,
        tmp: Path,
        db_url: str | None,
        heartbeat: float = 0.5,
        configs: Path | None = None,
        secure: bool = True,
        hub_args: tuple[str, ...] = (),
    ) -> None:
        self.tmp = tmp
        self.configs = configs
        self.secure = secure
        self.hub_args = hub_args
        self.enroll = f"127.0.0.1:{free_port()}"
        self.pki = tmp / "hub" / "pki"
        self.hubctl_config = tmp / "hubctl.yaml"
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
        argv += ["--enroll-listen", self.enroll] if self.secure else ["--insecure"]
        argv += self.hub_args
        pki = self.pki if self.secure else None
        hub = Hub("hub", argv, self.tmp / "logs" / "hub.log", address=self.address, pki=pki)
        self.daemons.append(hub)
        return hub

    def start_hub(self) -> Hub:
        if self.hub.running:
            raise AssertionError("hub already running")
        if self.hub.process is not None:
            self.hub = self._new_hub()
        self.hub.start()
        self.hub.wait_serving()
        entry = (
            {"ca": str(self.pki / "ca.crt"), "cert": str(self.pki / "admin.crt"),
             "key": str(self.pki / "admin.key"), "identity": "user/admin"}
            if self.secure else {"insecure": True}
        )  # fmt: skip
        self.hubctl_config.write_text(json.dumps({"hubs": {self.address: entry}}))
        return self.hub

    def create_token(
        self, role: trust_pb2.Role = trust_pb2.ROLE_AGENT, labels: dict[str, str] | None = None,
        name: str = "", ttl: int = 600,
    ) -> str:  # fmt: skip
        """A join token, created as the hub's admin."""
        request = trust_pb2.CreateTokenRequest(
            role=role,
            ttl_seconds=ttl,
            labels=labels or {},
            name=name,  # type: ignore[arg-type]
        )
        with self.hub.channel() as channel:
            reply = trust_pb2_grpc.TrustStub(channel).CreateToken(request, timeout=10)
        return str(reply.token)

    def _enrollment(self, state_dir: Path) -> Callable[[], list[str]]:
        """At the agent's start: join with a fresh token unless its state dir is enrolled."""

        def argv() -> list[str]:
            if not self.secure:
                return ["--insecure"]
            if (state_dir / "tls" / "agent.crt").exists():
                return []
            port = self.enroll.rpartition(":")[2]
            return ["--token", self.create_token(), "--enroll-port", port]

        return argv

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
        daemon.late_argv = self._enrollment(self.tmp / "agents" / (state or name))
        self.daemons.append(daemon)
        return daemon

    def hubctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "cli", "--hub", self.address, *args],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
            env={**os.environ, "GPUFLEET_CONFIG": str(self.hubctl_config)},
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
