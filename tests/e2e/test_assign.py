"""GPU assignments applied on real Podman through a real hub and two agents: only the
changed service's container is recreated, and rollback brings the previous override back."""

from __future__ import annotations

import json
import secrets
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import podman
from tests.support.procs import REPO, Cluster, free_port, wait_until

CONFIGS = REPO / "tests" / "fixtures" / "assign-configs"


class Pair:
    """A hub with the `pair` configuration and two agents with two GPUs each (static)."""

    def __init__(self, tmp: Path) -> None:
        self.cluster = Cluster(tmp, None, heartbeat=0.5, configs=CONFIGS)
        self.prefix = f"t{secrets.token_hex(3)}"
        self.ports: dict[tuple[str, str], int] = {}

    def node(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def agent(self, name: str) -> None:
        extra = ["--gpu-runtime", "none"]
        for service in ("one", "two"):
            self.ports[(name, service)] = port = free_port()
            extra += ["--env", f"{service.upper()}_PORT={port}"]
        self.cluster.agent(self.node(name), inventory="a5500-a400.yaml", extra=extra,
                           env=podman.env()).start()  # fmt: skip

    def run(self, *args: str) -> dict[str, Any] | list[Any]:
        done = self.cluster.hubctl(*args, "--json", check=False)
        assert done.returncode == 0, f"hubctl {' '.join(args)}: {done.stdout}{done.stderr}"
        found: dict[str, Any] | list[Any] = json.loads(done.stdout)
        return found

    def ids(self) -> dict[tuple[str, str], str]:
        """(node, service) -> container id of what runs."""
        return {(c["project"].removeprefix("gf-").rsplit("-", 2)[0], c["service"]): c["id"]
                for c in podman.containers(f"gf-{self.prefix}")}  # fmt: skip

    def gpu(self, name: str, service: str) -> str:
        url = f"http://127.0.0.1:{self.ports[(name, service)]}/gpu"

        def answer() -> str | None:
            try:
                with urllib.request.urlopen(url, timeout=2) as reply:
                    return str(reply.read().decode().strip())
            except OSError:
                return None

        return wait_until(answer, 30, f"{service} on {name} to serve {url}", every=0.2)

    def override(self, name: str) -> str:
        path = (self.cluster.tmp / "agents" / self.node(name) / "projects" / "pair"
                / "gpu-override.yaml")  # fmt: skip
        return path.read_text()


@pytest.fixture
def pair(tmp_path: Path, image: str) -> Iterator[Pair]:
    fleet = Pair(tmp_path)
    fleet.cluster.start_hub()
    try:
        yield fleet
    finally:
        fleet.cluster.close()
        podman.remove_projects(f"gf-{fleet.prefix}")


def succeeded(operation: dict[str, Any] | list[Any]) -> dict[str, str]:
    assert isinstance(operation, dict) and operation["status"] == "succeeded", operation
    return {n["node"]: n["result"] for n in operation["nodes"]}


def test_apply_recreates_only_the_changed_service_and_rollback_restores(pair: Pair) -> None:
    a, b = pair.node("a"), pair.node("b")
    pair.agent("a")
    pair.agent("b")
    pair.cluster.wait_status({a: "ready", b: "ready"})
    succeeded(pair.run("switch", "pair", "--node", a, "--node", b))
    assert set(pair.ids()) == {(a, "one"), (a, "two"), (b, "one"), (b, "two")}

    pair.run("assign", "set", "one", "--node", a, "--gpu", "0")
    pair.run("assign", "set", "two", "--node", b, "--gpu", "1")
    preview = pair.run("assign", "preview", "--config", "pair", "--strategy", "manual")
    assert isinstance(preview, dict)
    assert {(c["service"], c["change"]) for c in preview["changes"]} == {
        ("one", "added"),
        ("two", "added"),
    }
    first = pair.run("assign", "apply", "--config", "pair", "--strategy", "manual")
    assert succeeded(first) == {a: "changed", b: "changed"}
    ids = pair.ids()
    assert set(ids) == {(a, "one"), (b, "two")}  # each service runs on its node only
    assert (pair.gpu("a", "one"), pair.gpu("b", "two")) == ("0", "1")
    override_before = pair.override("b")

    pair.run("assign", "set", "two", "--node", b, "--gpu", "0", "--vram-budget", "0.5")
    second = pair.run("assign", "apply", "--config", "pair")
    succeeded(second)
    after = pair.ids()
    assert after[(a, "one")] == ids[(a, "one")]  # untouched
    assert after[(b, "two")] != ids[(b, "two")]  # recreated on its new GPU
    assert pair.gpu("b", "two") == "0"
    assert "VRAM_BUDGET_GB: '0.5'" in pair.override("b")

    back = pair.run("assign", "rollback", "--config", "pair")
    succeeded(back)
    rolled = pair.ids()
    assert rolled[(a, "one")] == ids[(a, "one")]
    assert rolled[(b, "two")] != after[(b, "two")]
    assert pair.override("b") == override_before
    assert pair.gpu("b", "two") == "1"
    shown = pair.run("assign", "show", "--config", "pair")
    assert isinstance(shown, list)
    assert [(x["service"], x["node"], x["gpus"]) for x in shown[0]["current"]] == [
        ("one", a, [0]), ("two", b, [1])]  # fmt: skip
    mirror = (pair.cluster.tmp / "hub" / "gpu-assignments.yml").read_text()
    assert mirror.startswith("# gpu-assignments.yml: generated") and "do not edit" in mirror


def test_bad_input_is_one_line_and_changes_nothing(pair: Pair) -> None:
    a = pair.node("a")
    pair.agent("a")
    pair.cluster.wait_status({a: "ready"})
    cases = [
        (("assign", "set", "one", "--node", a, "--gpu", "7"), "has no GPU 7"),
        (("assign", "set", "nope", "--node", a, "--gpu", "0"), "'nope' is in no configuration"),
        (("assign", "set", "one", "--node", "ghost", "--gpu", "0"), "unknown node ghost"),
        (("assign", "preview", "--config", "pair", "--strategy", "fastest"), "unknown strategy"),
        (("assign", "preview", "--config", "missing"), "unknown configuration 'missing'"),
        (("assign", "rollback", "--config", "pair"), "no previous assignments"),
    ]
    for args, expected in cases:
        done = pair.cluster.hubctl(*args, check=False)
        assert done.returncode != 0 and expected in done.stderr, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert pair.run("assign", "show") == []
