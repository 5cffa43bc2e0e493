"""The model registry and node caches end to end (issue 17), as an operator runs them with
hubctl: a real hub whose registry is a real S3 server process (moto's, on loopback), a
stand-in Hugging Face server in the Hub's URL layout (HF_ENDPOINT; huggingface_hub's own code
path), two real agents, real llama.cpp servers from this interpreter's environment.

The hub reaches the S3 server, and the agents its presigned URLs, through a slow network at the
process edge (tests/support/slownet.py, 6 MB/s from the server), so that an agent can be
killed in the middle of a download.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import need
from tests.e2e.test_model_switch import chat, servers
from tests.support import podman
from tests.support.hfhub import HfHub
from tests.support.procs import REPO, Cluster, Daemon, free_port, wait_until
from tests.support.s3server import S3Server, start_or_skip

MIB = 1024 * 1024
RATE = 6_000_000  # bytes per second from the S3 server to anyone
BIG = 40 * MIB
TINY = """\
name: tiny
engine: llama-cpp
source: {registry: tiny, file: tiny.gguf}
llama_cpp: {backend: cpu, n_ctx: 256}
"""


@dataclass
class Fleet:
    cluster: Cluster
    s3: S3Server
    hf: HfHub
    nodes: dict[str, str]
    tmp: Path
    gguf: bytes
    agents: dict[str, Daemon]

    def run(self, *args: str) -> tuple[int, str, str]:
        done = self.cluster.hubctl(*args, check=False)
        assert "Traceback" not in done.stderr, done.stderr
        return done.returncode, done.stdout, done.stderr

    def json(self, *args: str) -> Any:
        _, out, err = self.run(*args, "--json")
        assert out, err
        return json.loads(out)

    def agent(self, name: str, *extra: str) -> Daemon:
        """Node `name`'s agent (a fresh process on its state dir) with these flags added."""
        daemon = self.cluster.agent(
            self.nodes[name], env=podman.env(),
            extra=["--gpu-probe", "none", "--llama-env", f"cpu={sys.prefix}", *extra],
        )  # fmt: skip
        self.agents[name] = daemon
        return daemon.start()

    def cache_dir(self, name: str) -> Path:
        return self.tmp / "agents" / self.nodes[name] / "models"

    def caches(self, entry: str) -> dict[str, dict[str, Any]]:
        return {c["node"]: c for c in self.json("registry", "caches", entry)}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    try:
        import llama_cpp.server  # noqa: F401

        from tests.support.tiny_gguf import write_tiny_gguf
    except ImportError as exc:
        need(f"the llama extra is missing ({exc.name}): pip install -e '.[llama]'")
        raise
    tmp = tmp_path_factory.mktemp("registry")
    s3 = start_or_skip()
    slow = subprocess.Popen(
        [sys.executable, "-m", "tests.support.slownet", "--target", f"127.0.0.1:{s3.port}",
         "--rate", str(RATE)], stdout=subprocess.PIPE, cwd=REPO,
    )  # fmt: skip
    hf = HfHub(tmp / "hf", lfs_threshold=1024)
    gguf = write_tiny_gguf(tmp / "tiny.gguf", seed=3, name="tiny").read_bytes()
    hf.repo("Org/tiny-gguf", {"tiny.gguf": gguf, "README.md": b"# tiny\n"})
    models = tmp / "models"
    models.mkdir()
    (models / "tiny.yaml").write_text(TINY)
    (tmp / "configs").mkdir()
    suffix = secrets.token_hex(2)
    nodes = {name: f"r{name}{suffix}" for name in ("a", "b")}
    cluster = Cluster(tmp, None, heartbeat=0.5, configs=tmp / "configs",
                      hub_args=("--models", str(models), "--registry",
                                s3.spec(bucket=s3.fresh_bucket())))  # fmt: skip
    try:
        assert slow.stdout is not None
        port = int(slow.stdout.readline().split()[1])
        hf.start()
        with pytest.MonkeyPatch.context() as env:  # what the hub process inherits
            s3.apply(env)
            env.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{port}")
            env.setenv("HF_ENDPOINT", hf.endpoint)
            env.setenv("HF_HUB_DISABLE_XET", "1")
            cluster.start_hub()
        found = Fleet(cluster, s3, hf, nodes, tmp, gguf, {})
        for name in nodes:
            found.agent(name)
        cluster.wait_status({node: "ready" for node in nodes.values()}, timeout=60)
        yield found
    finally:
        cluster.close()
        hf.stop()
        slow.terminate()
        slow.wait(10)
        s3.stop()
        for pid in servers_of(tmp):
            os.kill(pid, signal.SIGKILL)


def servers_of(tmp: Path) -> list[int]:
    """llama.cpp servers this module's agents started (they outlive their agents)."""
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if argv[1:3] == [b"-m", b"llama_cpp.server"] and str(tmp).encode() in b" ".join(argv):
                found.append(int(entry.name))
    return found


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def events_of(fleet: Fleet, operation: str) -> str:
    """Every event message the hub stored for the operation, one string."""
    shown = fleet.json("ops", "show", operation)
    return " ".join(str(e.get("message", "")) for e in shown["events"])


def test_a_model_pulled_from_the_hub_is_cached_and_switched_with_a_fetch_phase(
    fleet: Fleet,
) -> None:
    code, out, err = fleet.run("registry", "pull", "tiny", "--hf", "Org/tiny-gguf")
    assert code == 0, err
    assert "RECAP registry-pull" in out
    [entry] = fleet.json("registry")
    assert (entry["name"], entry["source"], entry["state"], entry["files"]) == (
        "tiny", "hf:Org/tiny-gguf", "ready", 2)  # fmt: skip
    assert entry["revision"] == fleet.hf.commit("Org/tiny-gguf")
    shown = fleet.json("registry", "show", "tiny")
    files = {f["path"]: f for f in shown["files"]}
    assert files["tiny.gguf"]["sha256"] == sha256(fleet.gguf)
    assert files["README.md"]["sha256"] == sha256(b"# tiny\n")
    assert shown["models"] == ["tiny"] and shown["caches"] == []

    a, b = fleet.nodes["a"], fleet.nodes["b"]
    port = free_port()
    code, out, err = fleet.run("models", "switch", "tiny", "--node", b, "--port", str(port),
                               "--no-fetch")  # fmt: skip
    assert code != 0 and len(err.strip().splitlines()) == 1, (out, err)
    assert f"hubctl models cache tiny --node {b}" in err

    cached = fleet.json("models", "cache", "tiny", "--node", a)
    assert cached["status"] == "succeeded", cached
    held = fleet.caches("tiny")[a]
    assert (held["state"], held["verified"], held["revision"]) == (
        "complete", True, entry["revision"])  # fmt: skip
    snapshot = fleet.cache_dir("a") / "hf" / "models--Org--tiny-gguf" / "snapshots"
    assert (snapshot / entry["revision"] / "tiny.gguf").read_bytes() == fleet.gguf
    [model] = [m for m in fleet.json("models")["models"] if m["name"] == "tiny"]
    assert model["cached_on"] == [a]

    switched = fleet.json("models", "switch", "tiny", "--node", b, "--port", str(port))
    assert switched["status"] == "succeeded", switched
    events = events_of(fleet, switched["id"])
    assert "fetching" in events, events  # the switch's visible fetch phase
    status, answer = chat(port, "tiny")
    assert status == 200 and answer["choices"][0]["message"]["role"] == "assistant"
    assert servers(port)
    assert fleet.caches("tiny")[b]["state"] == "complete"

    code, _, err = fleet.run("models", "uncache", "tiny", "--node", b)
    assert code != 0 and "hubctl models stop tiny" in err, err
    code, _, err = fleet.run("registry", "rm", "tiny")
    assert code != 0 and "tiny" in err and len(err.strip().splitlines()) == 1, err


def partial_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in (root / ".partial").rglob("*") if p.is_file())


def test_an_agent_killed_mid_download_resumes_and_a_corrupt_chunk_is_fetched_again(
    fleet: Fleet,
) -> None:
    data = os.urandom(BIG)
    (fleet.tmp / "big").mkdir()
    (fleet.tmp / "big" / "big.bin").write_bytes(data)
    code, out, err = fleet.run("registry", "import", "big", str(fleet.tmp / "big"))
    assert code == 0, err
    a = fleet.nodes["a"]
    code, out, err = fleet.run("models", "cache", "big", "--node", a, "--detach")
    assert code == 0, err
    first = out.strip()
    root = fleet.cache_dir("a")
    # Killed once two whole chunks were verified and written (6 MB/s: about 6 s in; the
    # third, the last 8 MiB, takes 1.4 s more).
    wait_until(lambda: partial_bytes(root) >= 2 * 16 * MIB, 60, "two chunks of big fetched",
               every=0.05)  # fmt: skip
    fleet.agents["a"].kill()
    [part] = [p for p in (root / ".partial").rglob("*") if p.is_file()]
    kept = part.stat().st_size
    with part.open("r+b") as broken:  # a bad byte in the second chunk
        broken.seek(20 * MIB)
        byte = broken.read(1)
        broken.seek(20 * MIB)
        broken.write(bytes([byte[0] ^ 0xFF]))
    wait_until(lambda: fleet.json("ops", "show", first)["status"] != "running", 60,
               "the first fetch ended with its agent")  # fmt: skip
    fleet.agent("a")
    fleet.cluster.wait_status({a: "ready"}, timeout=60)
    again = fleet.json("models", "cache", "big", "--node", a)
    assert again["status"] == "succeeded", again
    line = " ".join(n.get("result", "") + " " + n.get("message", "") for n in again["nodes"])
    resumed = re.search(r"([\d.]+) MiB resumed", line)
    fetched = re.search(r"1 file, ([\d.]+) MiB at", line)
    assert resumed and fetched, line
    # The first chunk was kept (16 MiB); the second failed its sha256 and was fetched again
    # with the rest: nothing fetched twice beyond the chunk that was bad.
    assert float(resumed.group(1)) == 16.0 and kept >= 32 * MIB
    assert float(fetched.group(1)) == (BIG - 16 * MIB) / MIB
    assert (root / "files" / "big" / "big.bin").read_bytes() == data
    held = fleet.caches("big")[a]
    assert (held["state"], held["verified"]) == ("complete", True)
    assert partial_bytes(root) == 0


def test_a_fetch_that_would_fill_the_disk_is_refused_up_front(fleet: Fleet) -> None:
    b = fleet.nodes["b"]
    fleet.agents["b"].terminate()
    fleet.agent("b", "--cache-reserve", "1000T")
    fleet.cluster.wait_status({b: "ready"}, timeout=60)
    refused = fleet.json("models", "cache", "big", "--node", b)
    assert refused["status"] == "failed", refused
    [node] = refused["nodes"]
    said = node.get("result", "") + node.get("message", "")
    assert "1000.0 TiB" in said and "hubctl models uncache" in said, said
    assert partial_bytes(fleet.cache_dir("b")) == 0  # nothing fetched
    assert b not in fleet.caches("big")
