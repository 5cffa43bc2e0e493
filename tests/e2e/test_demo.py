"""The README's "Try it without GPUs" walk, run as the README states it, on real Podman.

The fenced block is read out of README.md, so the test fails when the README and the product
part ways. Only what isolates the run is added: `hubctl up --demo` gets a free `--listen`, a
free `--gateway-listen` and free demo ports (`--env DEMO_..._PORT`), and every process an
isolated HOME, XDG dirs and hubctl config. `hubctl` is this checkout's, whatever is installed.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from cli import demo_image
from cli.up import STOP_GRACE_S
from tests.conftest import need
from tests.support import podman
from tests.support.procs import REPO, free_port, wait_until

PORTS = ("DEMO_LLM_PORT", "DEMO_YOLO_PORT", "DEMO_FLORENCE_PORT", "DEMO_CLIP_PORT",
         "DEMO_ENRICHMENT_PORT")  # fmt: skip
FIVE = {"ai-llm", "ai-yolo26", "ai-florence", "ai-clip", "ai-enrichment"}


def readme_walk() -> list[str]:
    """The commands of the fenced block under "## Try it without GPUs", comments dropped."""
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Try it without GPUs\n", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```sh\n(.*?)```", section, re.S)
    assert found, "README: no ```sh block under '## Try it without GPUs'"
    lines = (re.sub(r"\s+#.*$", "", line).strip() for line in found.group(1).splitlines())
    return [line for line in lines if line]


def run_podman(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return podman.podman(*argv, check=False)


@pytest.fixture
def demo_host(image: str) -> None:
    """Podman works (the `image` fixture imported an image) and busybox is static."""
    try:
        demo_image.check_prerequisites()
    except demo_image.DemoUnavailable as exc:
        need(str(exc))


@dataclass
class Walk:
    tmp: Path
    node: str = ""
    ports: dict[str, int] = field(default_factory=lambda: {k: free_port() for k in PORTS})
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        shim = self.tmp / "bin" / "hubctl"
        shim.parent.mkdir(parents=True)
        path = f"{REPO / 'proto'}:{REPO}"
        shim.write_text(f'#!/bin/sh\nPYTHONPATH="{path}${{PYTHONPATH:+:$PYTHONPATH}}" '
                        f'exec {sys.executable} -m cli "$@"\n')  # fmt: skip
        shim.chmod(0o755)
        home = self.tmp / "home"
        home.mkdir()
        self.env = {**os.environ, **podman.env(), "HOME": str(home),
                    "XDG_STATE_HOME": str(self.tmp / "state"),
                    "XDG_CONFIG_HOME": str(self.tmp / "config"),
                    "GPUFLEET_CONFIG": str(self.tmp / "config" / "hubctl.yaml"),
                    "PATH": f"{shim.parent}:{os.environ['PATH']}"}  # fmt: skip
        self.env.pop("GPUFLEET_HUB", None)
        self.node = self.sh("hostname -s").stdout.strip()

    def sh(self, command: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "-c", command], capture_output=True, text=True,
                              timeout=timeout, env=self.env, cwd=self.tmp)  # fmt: skip

    def json(self, command: str) -> Any:
        done = self.sh(f"{command} --json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def status(self) -> dict[str, Any]:
        [mine] = [n for n in self.json("hubctl status") if n["node"] == self.node]
        return dict(mine)

    def health(self, port_var: str) -> str:
        url = f"http://127.0.0.1:{self.ports[port_var]}/cgi-bin/health"
        with urllib.request.urlopen(url, timeout=5) as reply:
            return str(reply.read().decode().strip())

    def services(self) -> set[str]:
        return {c["service"] for c in podman.containers(f"gf-{self.node}-")}


def check(walk: Walk, command: str, done: subprocess.CompletedProcess[str]) -> str:
    """Assert what `command` of the README should have done; return its kind."""
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{command}: {output}"
    assert "Traceback" not in output, output
    if command == "hubctl configs":
        assert "demo-chat" in output and "demo-vision" in output, output
        return "configs"
    if command == "hubctl status":
        assert walk.node in output and "ready" in output, output
        return "status"
    if command == "hubctl stop --all":
        assert walk.services() == set(), podman.containers(f"gf-{walk.node}-")
        assert walk.status()["state"] == "stopped", walk.status()
        return "stop"
    if match := re.fullmatch(r"hubctl switch (\S+) --node \$\(hostname -s\)", command):
        config = match.group(1)
        assert "services healthy" in output and "HTTP 503" in output, output  # live, loading
        state = walk.status()
        assert (state["configuration"], state["state"]) == (config, "ready"), state
        expected = {"ai-llm"} if config == "demo-chat" else FIVE
        assert walk.services() == expected, podman.containers(f"gf-{walk.node}-")
        assert walk.health("DEMO_LLM_PORT").startswith("ready ai-llm"), output
        return f"switch {config}"
    if match := re.fullmatch(r"hubctl assign (preview|apply) --config (\S+)( .*)?", command):
        verb, config, rest = match.group(1), match.group(2), match.group(3) or ""
        assert config == "demo-vision", command
        if verb == "preview":
            plan = walk.json(command)
            where = {a["service"]: (a["node"], a["gpus"]) for a in plan["assignments"]}
            # The multi-GPU design's recommended plan: warn but allow.
            for service in ("ai-llm", "ai-yolo26", "ai-florence", "ai-clip"):
                assert where[service] == (walk.node, [0]), plan
            assert where["ai-enrichment"] == (walk.node, [1]), plan
            warnings = [w["message"] for w in plan["warnings"]]
            assert any(
                w.startswith("Combined VRAM (~25.1 GB) exceeds GPU 0 capacity (24 GB)")
                for w in warnings
            ), warnings
            assert not plan["unplaced"], plan
            budgets = {a["service"]: a["vram_budget_gb"] for a in plan["assignments"]}
            assert budgets["ai-enrichment"] == 3.5, plan
            return f"preview{rest}"
        assert "succeeded" in output, output
        seen = walk.health("DEMO_ENRICHMENT_PORT")
        assert "CUDA_VISIBLE_DEVICES=1" in seen and "VRAM_BUDGET_GB=3.5" in seen, seen
        assert "CUDA_VISIBLE_DEVICES=0" in walk.health("DEMO_LLM_PORT")
        assert "CUDA_VISIBLE_DEVICES=0" in walk.health("DEMO_CLIP_PORT")
        return f"apply{rest}"
    raise AssertionError(f"the README's demo walk has a command this test does not know: {command}")


@pytest.fixture
def walk(tmp_path: Path, demo_host: None) -> Iterator[Walk]:
    walk = Walk(tmp_path)
    try:
        yield walk
    finally:
        podman.remove_projects(f"gf-{walk.node}-")


def test_readme_demo_walk_end_to_end(walk: Walk) -> None:
    commands = readme_walk()
    assert commands[0] == "hubctl up --demo", commands
    address = f"127.0.0.1:{free_port()}"
    gateway = f"127.0.0.1:{free_port()}"  # not the default 8080, which may be taken here
    extra = [f"--listen {address}", f"--gateway-listen {gateway}",
             *(f"--env {k}={v}" for k, v in walk.ports.items())]  # fmt: skip
    was_current = demo_image.current_hash(run_podman) == demo_image.content_hash(
        demo_image.BUSYBOX.read_bytes()
    )
    log = walk.tmp / "up.log"
    argv = ["bash", "-c", f"exec {commands[0]} {' '.join(extra)}"]
    with log.open("w") as out:
        up = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=walk.env,
                              cwd=walk.tmp)  # fmt: skip
    try:

        def node_ready() -> bool:
            assert up.poll() is None, log.read_text()
            done = walk.sh("hubctl nodes --json")
            return done.returncode == 0 and any(
                (n["name"], n["status"]) == (walk.node, "ready") for n in json.loads(done.stdout)
            )

        wait_until(node_ready, 90, "the demo node to be ready", every=0.3)
        kinds = [check(walk, command, walk.sh(command)) for command in commands[1:]]
        assert kinds == ["configs", "switch demo-chat", "status", "switch demo-vision",
                         "preview --strategy vram_based", "apply --strategy vram_based",
                         "stop"], kinds  # fmt: skip

        up.send_signal(signal.SIGTERM)
        started = time.monotonic()
        up.wait(timeout=2 * STOP_GRACE_S)  # agent, then hub, each within its grace
        stopped_in = time.monotonic() - started
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)
            try:
                up.wait(timeout=2 * STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                up.kill()
                up.wait()
    output = log.read_text()
    assert up.returncode == 0, output
    assert "gpufleet is up" in output and "Demo:" in output, output
    assert "agent stopped" in output and "hub stopped" in output, output
    assert "Traceback" not in output, output
    assert stopped_in < STOP_GRACE_S, (stopped_in, output)
    assert walk.services() == set()
    assert walk.sh("hubctl nodes").returncode == 2  # nothing left listening
    assert ("building the demo image" in output) is not was_current, output


def test_demo_image_builds_once_and_rebuilds_when_stale(demo_host: None) -> None:
    name = f"localhost/gpufleet-demo-test:{secrets.token_hex(4)}"
    spec = replace(demo_image.DEMO, name=name)
    said: list[str] = []
    first = ""
    try:
        built = demo_image.ensure_image(run_podman, said.append, spec)
        assert built is not None and built.image == name
        [line] = said
        assert name in line and "busybox-static" in line and " MB" in line, line
        assert 1 < built.size_mb < 10, built
        assert demo_image.current_hash(run_podman, name) == built.digest
        assert demo_image.ensure_image(run_podman, said.append, spec) is None
        assert len(said) == 1  # current: nothing built, nothing said
        # Another image under the name (not this builder's): rebuilt; the other image keeps
        # its other tag (only an untagged stale build is removed).
        first = run_podman(["image", "inspect", "--format", "{{.Id}}", name]).stdout.strip()
        run_podman(["tag", podman.IMAGE, name])
        assert demo_image.current_hash(run_podman, name) != built.digest
        assert demo_image.ensure_image(run_podman, said.append, spec) is not None
        assert demo_image.current_hash(run_podman, name) == built.digest
        assert run_podman(["image", "exists", podman.IMAGE]).returncode == 0
    finally:
        run_podman(["rmi", "-f", name])
        if first:
            run_podman(["rmi", first])


def test_demo_without_podman_names_the_package_and_starts_nothing(tmp_path: Path) -> None:
    bare = tmp_path / "bin"
    bare.mkdir()
    env = {**os.environ, "PATH": str(bare), "XDG_STATE_HOME": str(tmp_path / "state"),
           "PYTHONPATH": f"{REPO / 'proto'}:{REPO}"}  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "cli", "up", "--demo", "--listen",
                           f"127.0.0.1:{free_port()}"], capture_output=True, text=True,
                          timeout=60, env=env, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 1, done
    assert done.stderr == (
        "hubctl: cannot run the demo: podman not found: install Debian's packages podman runc "
        "netavark\n"
    ), done.stderr
    assert "gpufleet is up" not in done.stdout
    assert not (tmp_path / "state").exists()  # nothing started, nothing written


def test_demo_on_a_podman_that_would_fail_says_why_and_starts_nothing(
    tmp_path: Path, demo_host: None
) -> None:
    """Podman on the CNI backend with no plugins (a Debian default without
    containernetworking-plugins): the first switch would fail, so `up --demo` says so first."""
    (tmp_path / "empty").mkdir()
    conf = tmp_path / "cni.conf"
    backend = f'network_backend = "cni"\ncni_plugin_dirs = ["{tmp_path / "empty"}"]'
    conf.write_text(podman.CONTAINERS_CONF.read_text().replace(
        'network_backend = "netavark"', backend))  # fmt: skip
    env = {**os.environ, "CONTAINERS_CONF": str(conf), "XDG_STATE_HOME": str(tmp_path / "state"),
           "PYTHONPATH": f"{REPO / 'proto'}:{REPO}"}  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "cli", "up", "--demo", "--listen",
                           f"127.0.0.1:{free_port()}"], capture_output=True, text=True,
                          timeout=120, env=env, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 1, done
    lines = done.stderr.splitlines()
    assert lines[-1] == (
        "hubctl: cannot run the demo: podman preflight found 1 problem (above); fix them"
    ), done.stderr
    [problem] = [line for line in lines if line.startswith("podman preflight: ")]
    assert "no CNI bridge plugin" in problem and "containernetworking-plugins" in problem
    assert "gpufleet is up" not in done.stdout
    assert not (tmp_path / "state").exists()  # nothing started, nothing written
