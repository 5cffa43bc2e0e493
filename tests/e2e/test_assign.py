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

from tests.conftest import need
from tests.support import podman
from tests.support.nvml import (
    FakeGpu,
    FakeHost,
    FakeNvmlUnavailable,
    build_library,
    nvml_env,
    write_host,
)
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


# ---- the multi-GPU design's reference host through a real hub ---------------------------------
SEED_PORTS = ("LLM", "YOLO", "FLORENCE", "CLIP", "ENRICHMENT")
DESIGNED = {"ai-llm": [0], "ai-yolo26": [0], "ai-florence": [0], "ai-clip": [0],
            "ai-enrichment": [1]}  # fmt: skip
# service -> GPU of each strategy's plan (over-commit, the default); tests/hub/test_placement.py
# holds the full table with budgets, unplaced services and warnings, both modes.
REFERENCE = {
    "vram_based": DESIGNED,
    "latency_optimized": DESIGNED,
    "balanced": DESIGNED,
    "isolation_first": {**{s: [1] for s in DESIGNED}, "ai-llm": [0]},
    "optimal": {**{s: [1] for s in DESIGNED}, "ai-llm": [0]},
}


def seed_agent(pair: Pair, name: str) -> dict[str, int]:
    """An agent over the static reference-host inventory, with a port for each seed service."""
    ports = {service: free_port() for service in SEED_PORTS}
    extra = ["--gpu-runtime", "none"]
    for service, port in ports.items():
        extra += ["--env", f"{service}_PORT={port}"]
    pair.cluster.agent(pair.node(name), inventory="a5500-a400.yaml", extra=extra,
                       env=podman.env()).start()  # fmt: skip
    return ports


def plan_of(preview: dict[str, Any] | list[Any]) -> dict[str, list[int]]:
    assert isinstance(preview, dict)
    return {a["service"]: a["gpus"] for a in preview["assignments"]}


def served(port: int) -> str:
    def answer() -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/gpu", timeout=2) as reply:
                return str(reply.read().decode().strip())
        except OSError:
            return None

    return wait_until(answer, 30, f"127.0.0.1:{port}/gpu to answer", every=0.2)


def test_reference_host_plans_preview_and_apply_as_the_design_says(pair: Pair) -> None:
    a = pair.node("a")
    ports = seed_agent(pair, "a")
    pair.cluster.wait_status({a: "ready"})
    preview = pair.run("assign", "preview", "--config", "seed", "--strategy", "vram_based")
    assert isinstance(preview, dict) and plan_of(preview) == DESIGNED
    assert preview["unplaced"] == []
    budgets = {x["service"]: x["vram_budget_gb"] for x in preview["assignments"]}
    assert budgets["ai-enrichment"] == 3.5 and budgets["ai-llm"] is None
    messages = {(w["kind"], w["service"]): w["message"] for w in preview["warnings"]}
    assert messages[("combined_over_capacity", None)] == (
        f"Combined VRAM (~25.1 GB) exceeds GPU 0 capacity (24 GB) on {a}"
    )
    assert messages[("auto_adjusted", "ai-enrichment")] == (
        f"ai-enrichment VRAM budget (6.8 GB) exceeds GPU 1 (4 GB) on {a}; auto-adjusted to 3.5 GB"
    )
    for strategy, expected in REFERENCE.items():
        found = pair.run("assign", "preview", "--config", "seed", "--strategy", strategy)
        assert plan_of(found) == expected, strategy
    strict = pair.run("assign", "preview", "--config", "seed", "--strategy", "vram_based",
                      "--no-overcommit", "--node", a)  # fmt: skip
    assert isinstance(strict, dict)
    assert strict["unplaced"] == [{"service": "ai-clip", "reason": (
        f"needs 1.2 GB free on one GPU; the most free on any GPU of {a} is 0.7 GB "
        "(GPU 0, 23.2 of 24 GB used)")}]  # fmt: skip

    succeeded(pair.run("switch", "seed", "--node", a))
    done = pair.run("assign", "apply", "--config", "seed", "--strategy", "vram_based")
    assert succeeded(done) == {a: "changed"}
    seen = {service: served(port) for service, port in ports.items()}
    assert seen == {"LLM": "0 none", "YOLO": "0 none", "FLORENCE": "0 none", "CLIP": "0 none",
                    "ENRICHMENT": "1 3.5"}  # fmt: skip
    shown = pair.run("assign", "show", "--config", "seed")
    assert isinstance(shown, list)
    assert {x["service"]: x["gpus"] for x in shown[0]["current"]} == DESIGNED
    assert pair.run("assign") == pair.run("assign", "show")  # the group alone shows them


def test_selector_and_node_options_choose_the_nodes(pair: Pair) -> None:
    a = pair.node("a")
    pair.cluster.agent(a, inventory="a5500-a400.yaml", labels="role=vision",
                       extra=["--gpu-runtime", "none"]).start()  # fmt: skip
    pair.cluster.wait_status({a: "ready"})
    found = pair.run("assign", "preview", "--config", "seed", "-l", "role=vision")
    assert isinstance(found, dict) and {x["node"] for x in found["gpus"]} == {a}
    for args, expected, code in [
        (("-l", "role=chat"), "no connected node matches role=chat", 1),
        (("-l", "role=vision", "--node", "ghost"), "unknown node ghost", 1),
        (("-l", "bad key"), "invalid label selector 'bad key'", 2),
        (("--node", ""), "empty node name", 2),
    ]:
        done = pair.cluster.hubctl("assign", "preview", "--config", "seed", *args, check=False)
        assert done.returncode == code and expected in done.stderr, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert plan_of(pair.run("assign", "preview", "--config", "seed", "--nodes", a)) == DESIGNED
    assert plan_of(pair.run("assign", "preview", "--config", "seed", "--node", a)) == DESIGNED


@pytest.fixture(scope="session")
def nvml_lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        return build_library(tmp_path_factory.mktemp("fake-nvml"))
    except FakeNvmlUnavailable as exc:
        need(str(exc))
        raise


def test_vram_of_processes_gpufleet_did_not_start_is_not_free(tmp_path: Path, nvml_lib: Path
                                                              ) -> None:  # fmt: skip
    """A node over the simulated NVML whose A5500 is mostly held by a process outside gpufleet's
    containers: preview counts it as used, in both modes, with the wording of the plan."""
    cluster = Cluster(tmp_path, None, heartbeat=0.5, configs=CONFIGS)
    try:
        cluster.start_hub()
        host = FakeHost([FakeGpu("NVIDIA RTX A5500", "GPU-foreign-0", 24564, 19340,
                                 processes=[(4242, 19340)])])  # fmt: skip
        host_file = tmp_path / "gpu-c.nvml"
        write_host(host_file, host)
        cluster.agent("gpu-c", extra=["--gpu-probe", "nvml", "--gpu-runtime", "none"],
                      env=nvml_env(nvml_lib, host_file)).start()  # fmt: skip
        cluster.wait_status({"gpu-c": "ready"})
        held = "GPU 0, 18.9 of 24 GB used, 18.9 GB of it by processes gpufleet did not start"

        def preview(*extra: str) -> dict[str, Any]:
            done = cluster.hubctl("assign", "preview", "--config", "huge", "--json", *extra)
            found: dict[str, Any] = json.loads(done.stdout)
            return found

        strict = preview("--no-overcommit")
        assert strict["unplaced"] == [{"service": "chat", "reason": (
            f"needs 72 GB free on one GPU; the most free on any GPU of gpu-c is 5.1 GB ({held})"
        )}]  # fmt: skip
        found = preview()
        assert found["unplaced"] == [{"service": "chat", "reason": (
            "needs 72 GB on one GPU, more than any GPU of gpu-c holds; the largest is 5.1 GB "
            f"usable of 24 GB ({held})")}]  # fmt: skip
        assert [w["message"] for w in found["warnings"] if w["kind"] == "foreign_vram"] == [
            "GPU 0 on gpu-c: 18.9 of 24 GB held by processes gpufleet did not start; placement "
            "uses the other 5.1 GB"
        ]
        text = " ".join(cluster.hubctl("assign", "preview", "--config", "huge").stdout.split())
        assert "more than any GPU of gpu-c holds" in text and "uses the other 5.1 GB" in text
    finally:
        cluster.close()
