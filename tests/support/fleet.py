"""A hub with the switch test configurations and agents that run real containers."""

from __future__ import annotations

import json
import secrets
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from tests.support import podman
from tests.support.procs import REPO, Cluster, Daemon, free_port

CONFIGS = REPO / "tests" / "fixtures" / "switch-configs"


class Fleet:
    """A hub with the test configurations and agents that run real containers."""

    def __init__(self, tmp: Path) -> None:
        self.cluster = Cluster(tmp, None, heartbeat=0.5, configs=CONFIGS)
        self.prefix = f"t{secrets.token_hex(3)}"
        self.ports: dict[str, int] = {}

    def agent(self, name: str, load_delay: float = 0.5) -> Daemon:
        node = f"{self.prefix}-{name}"
        metrics = self.cluster.tmp / "metrics" / node
        metrics.mkdir(parents=True, exist_ok=True)
        self.set_in_flight(name, 0)
        self.ports[name] = free_port()
        env = [f"WEB_PORT={self.ports[name]}", f"METRICS_DIR={metrics}", f"LOAD_DELAY={load_delay}"]
        extra = ["--gpu-probe", "none", "--gpu-runtime", "none"]
        extra += ["--allow-bind-roots", str(metrics)]  # the configs bind METRICS_DIR
        for item in env:
            extra += ["--env", item]
        return self.cluster.agent(node, extra=extra, env=podman.env()).start()

    def node(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def set_in_flight(self, name: str, count: int) -> None:
        path = self.cluster.tmp / "metrics" / self.node(name) / "metrics"
        path.write_text(f"# TYPE test_requests_running gauge\ntest_requests_running {count}\n")

    def health(self, name: str) -> str:
        url = f"http://127.0.0.1:{self.ports[name]}/health"
        with urllib.request.urlopen(url, timeout=5) as reply:
            return str(reply.read().decode().strip())

    def hubctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.cluster.hubctl(*args, check=False)

    def switch(self, config: str, *names: str, extra: tuple[str, ...] = ()) -> dict[str, Any]:
        nodes = [arg for name in names for arg in ("--node", self.node(name))]
        result = self.hubctl("switch", config, *nodes, *extra, "--json")
        found: dict[str, Any] = json.loads(result.stdout)
        found["exit_code"] = result.returncode
        return found

    def status(self) -> dict[str, dict[str, Any]]:
        return {n["node"]: n for n in self.cluster.json("status")}

    def containers(self) -> list[dict[str, str]]:
        return podman.containers(f"gf-{self.prefix}")
