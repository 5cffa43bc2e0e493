"""hubctl registry and models cache/uncache as real processes: bad input is refused before
anything is sent (one line, exit 2, even with no hub listening); against a real hub, a local
directory is imported (hashed here, streamed), listed, shown with its files' sha256 and the
model that uses it, refused removal while that model names it, then removed with --force;
the caches listing with no agent and with one whose cache holds the entry (then down)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.test_bad_input import hubctl, refused
from tests.cli.test_startup import NEVER, absent, loaded
from tests.support.hfhub import HfHub
from tests.support.procs import REPO, Cluster, free_port, wait_until

ENTRY = "tiny"
MODEL = """\
name: tiny-model
description: a registry model for the registry CLI tests
engine: llama-cpp
source: {registry: tiny, file: model.gguf}
llama_cpp: {n_ctx: 256, backend: cpu}
"""
FILES = {"model.gguf": b"GGUF" + bytes(range(256)) * 40, "sub/notes.txt": b"hello registry\n"}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("registry-files")
    source = root / "source"
    for name, data in FILES.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(data)
    (root / "empty").mkdir()
    return {"dir": source, "empty": root / "empty", "missing": root / "nowhere"}


LOCAL = [
    (["registry", "show", "Bad_Name"], "'Bad_Name' is not an entry name: a DNS label"),
    (["registry", "show", "Qwen3"], "(lower case: qwen3)"),
    (["registry", "show", ""], "is not an entry name"),
    (["registry", "rm", "a..b"], "is not an entry name"),
    (["registry", "rm", "x" * 64], "is not an entry name"),
    (["registry", "--json", "show", "x"], "--json goes after the subcommand"),
    (["registry", "pull", "x"], "Missing option '--hf'"),
    (["registry", "pull", "x", "--hf", "qwen"], "--hf 'qwen' is not a repository id: ORG/NAME"),
    (["registry", "pull", "x", "--hf", "a/b/c"], "is not a repository id"),
    (["registry", "pull", "x", "--hf", "a/b", "--revision", "a b"], "not a branch, tag or"),
    (["registry", "pull", "x", "--hf", "a/b", "--include", " "], "empty --include pattern"),
    (["registry", "import", "x", "{missing}"], "nowhere: no such file or directory"),
    (["registry", "import", "x", "{empty}"], "no file to import in this directory"),
    (["registry", "import", "x", "/proc/self/mem"], "cannot read /proc/self/mem"),
    (["registry", "import", "Nope", "{dir}"], "'Nope' is not an entry name"),
    (["registry", "import", "x", "{dir}", "--layout", "gguf"], "--layout 'gguf' is not a"),
    (["registry", "import", "x", "{dir}", "--layout", "hf"], "--layout hf needs --repo"),
    (["registry", "import", "x", "{dir}", "--repo", "a/b"], "--repo goes only with --layout hf"),
    (["registry", "import", "x", "{dir}", "--layout", "hf", "--repo", "a"],
     "--repo 'a' is not a repository id"),
    (["registry", "caches", "-l", "=x"], "selector"),
    (["registry", "caches", "a b"], "is not an entry or model name"),
    (["models", "cache", "m"], "name the nodes (--node gpu-a)"),
    (["models", "cache", "m", "--node", "a", "--all"], "not both"),
    (["models", "cache", "m", "--node", "a,,b"], "empty node name"),
    (["models", "uncache", "m"], "name the nodes whose cache to free: --node gpu-a"),
    (["models", "switch", "m", "--no-fetch"], "name the nodes (--node gpu-a)"),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "fragment"), LOCAL, ids=[" ".join(a)[:48] for a, _ in LOCAL])
def test_bad_input_is_refused_before_anything_is_sent(
    argv: list[str], fragment: str, paths: dict[str, Path]
) -> None:
    """No hub listens at the address: a command that tried to call one would say so."""
    given = [arg.format(**paths) for arg in argv]
    result = hubctl("--hub", f"127.0.0.1:{free_port()}", "--insecure", *given)
    refused(result, fragment)
    assert result.returncode == 2, result.stderr
    assert "cannot reach hub" not in result.stderr


def test_an_import_hashes_first_and_then_needs_the_hub(paths: dict[str, Path]) -> None:
    """Everything checked and hashed, the call is the first thing that fails."""
    result = hubctl("--hub", f"127.0.0.1:{free_port()}", "--insecure", "registry", "import",
                    ENTRY, str(paths["dir"]))  # fmt: skip
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and result.stdout == "", result
    assert lines[0].startswith("hashed 2/2 files, "), lines
    assert lines[-1].startswith("hubctl: cannot reach hub at 127.0.0.1:"), lines


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A real hub whose models directory holds tiny-model, a registry model of `tiny`."""
    root = tmp_path_factory.mktemp("registry-hub")
    models = root / "models"
    models.mkdir()
    (models / "tiny-model.yaml").write_text(MODEL)
    cluster = Cluster(root, None, secure=False, hub_args=("--models", str(models)))
    cluster.start_hub()
    yield cluster
    cluster.close()


def test_an_empty_registry_says_how_to_fill_it(fleet: Cluster) -> None:
    assert fleet.json("registry") == []
    shown = fleet.hubctl("registry").stdout.strip()
    assert shown.startswith("The registry is empty. Fill it: hubctl registry pull NAME --hf")
    refused(fleet.hubctl("registry", "show", "absent", check=False), "absent")


def test_a_directory_imported_listed_shown_refused_and_removed(
    fleet: Cluster, paths: dict[str, Path]
) -> None:
    said = fleet.hubctl("registry", "import", ENTRY, str(paths["dir"]))
    assert said.stdout.startswith(f"imported {ENTRY}: 2 files, "), said.stdout
    assert "hashed 2/2 files" in said.stderr and "sent 2/2 files" in said.stderr, said.stderr
    [entry] = fleet.json("registry")
    total = sum(len(data) for data in FILES.values())
    assert entry["name"] == ENTRY and entry["source"] == "import" and entry["state"] == "ready"
    assert (entry["files"], entry["size_bytes"], entry["layout"]) == (2, total, "files")
    assert len(entry["revision"]) == 64 and entry["pulled"], entry
    table = fleet.hubctl("registry").stdout.splitlines()
    assert table[0].split() == ["NAME", "SOURCE", "REVISION", "FILES", "SIZE", "PULLED", "STATE"]
    assert table[1].split()[:4] == [ENTRY, "import", entry["revision"][:12], "2"], table
    assert table[1].split()[-1] == "ready", table

    shown = fleet.json("registry", "show", ENTRY)
    assert {f["path"]: (f["size_bytes"], f["sha256"]) for f in shown["files"]} == {
        name: (len(data), sha256(data)) for name, data in FILES.items()
    }
    assert shown["models"] == ["tiny-model"] and shown["caches"] == [], shown
    text = fleet.hubctl("registry", "show", ENTRY).stdout
    assert sha256(FILES["model.gguf"]) in text and "sub/notes.txt" in text, text
    assert "models:   tiny-model" in text and "Cached on no node." in text, text

    refusal = fleet.hubctl("registry", "rm", ENTRY, check=False)
    refused(refusal, "tiny-model")
    assert refusal.returncode == 1
    assert [e["name"] for e in fleet.json("registry")] == [ENTRY]
    forced = fleet.hubctl("registry", "rm", ENTRY, "--force")
    assert forced.stdout.startswith(f"removed {ENTRY} (2 files, "), forced.stdout
    assert "hubctl: warning: " in forced.stderr and "tiny-model" in forced.stderr, forced.stderr
    assert fleet.json("registry") == []


def test_an_hf_layout_import_keeps_its_repository(fleet: Cluster, paths: dict[str, Path]) -> None:
    found = fleet.json("registry", "import", "tiny-hf", str(paths["dir"]), "--layout", "hf",
                       "--repo", "Org/Tiny")  # fmt: skip
    assert (found["name"], found["layout"], found["repo"]) == ("tiny-hf", "hf", "Org/Tiny")
    removed = fleet.json("registry", "rm", "tiny-hf")
    assert removed["name"] == "tiny-hf" and removed["warnings"] == [], removed


def test_a_pull_followed_live_then_detached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Hugging Face repository (the stand-in Hub) pulled as an operation: its id, progress
    lines and the recap; a second pull of it with --detach prints only the operation's id."""
    with HfHub(tmp_path / "hf") as stand_in:
        stand_in.repo("Org/Tiny", FILES)
        monkeypatch.setenv("HF_ENDPOINT", stand_in.endpoint)
        monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
        cluster = Cluster(tmp_path / "fleet", None, secure=False)
        cluster.start_hub()
        try:
            said = cluster.hubctl("registry", "pull", "tiny-pull", "--hf", "Org/Tiny")
            lines = said.stdout.splitlines()
            assert lines[0].startswith("operation "), lines
            assert any("RECAP registry-pull" in line for line in lines), said.stdout
            [entry] = cluster.json("registry")
            assert (entry["name"], entry["source"], entry["state"]) == (
                "tiny-pull", "hf:Org/Tiny", "ready")  # fmt: skip
            assert entry["revision"] == stand_in.commit("Org/Tiny") and entry["files"] == 2
            again = cluster.hubctl("registry", "pull", "tiny-pull", "--hf", "Org/Tiny",
                                   "--detach")  # fmt: skip
            operation = again.stdout.strip()
            assert len(again.stdout.splitlines()) == 1 and operation, again.stdout
            assert f"hubctl ops watch {operation}" in again.stderr, again.stderr
            wait_until(lambda: cluster.json("ops", "show", operation)["status"] == "succeeded",
                       20, "the second pull done")  # fmt: skip
            interrupted(cluster, stand_in)
        finally:
            cluster.close()


def interrupted(cluster: Cluster, stand_in: HfHub) -> None:
    """Ctrl-C while a (throttled) pull is followed: one line saying how to follow it again,
    exit 130; the pull goes on at the hub until cancelled."""
    stand_in.repo("Org/Slow", {"big.bin": bytes(4 << 20)})
    stand_in.faults(rate=256 * 1024)
    follower = subprocess.Popen(
        [sys.executable, "-m", "cli", "--hub", cluster.address, "registry", "pull", "slow",
         "--hf", "Org/Slow"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        env={**os.environ, "GPUFLEET_CONFIG": str(cluster.hubctl_config)},
    )  # fmt: skip
    assert follower.stdout is not None
    first = follower.stdout.readline()
    assert first.startswith("operation "), first
    operation = first.split()[1]
    time.sleep(1)
    follower.send_signal(signal.SIGINT)
    _, err = follower.communicate(timeout=20)
    assert follower.returncode == 130, err
    assert err.strip() == (f"hubctl: stopped watching; operation {operation} goes on at the "
                           f"hub: hubctl ops watch {operation} (hubctl ops cancel {operation} "
                           "stops it)")  # fmt: skip
    assert cluster.json("ops", "show", operation)["status"] == "running"
    cluster.hubctl("ops", "cancel", operation)


def test_no_cache_anywhere_says_how_to_fetch(fleet: Cluster) -> None:
    assert fleet.json("registry", "caches") == []
    said = fleet.hubctl("registry", "caches", "tiny-model").stdout.strip()
    assert said == "No node holds tiny-model. Fetch one: hubctl models cache MODEL --node NODE"
    refused(fleet.hubctl("registry", "caches", "absent", check=False), "'absent'")


def test_a_nodes_cache_listed_then_shown_down(tmp_path: Path, paths: dict[str, Path]) -> None:
    """An agent caches the entry (models cache, an operation); the caches listing, the entry's
    holders, the models listing's CACHED column; freed by uncache; (down) once it is gone."""
    models = tmp_path / "models"
    models.mkdir()
    (models / "tiny-model.yaml").write_text(MODEL)
    cluster = Cluster(tmp_path, None, secure=False, hub_args=("--models", str(models)))
    cluster.start_hub()
    try:
        cluster.hubctl("registry", "import", ENTRY, str(paths["dir"]))
        agent = cluster.agent("gpu-a", extra=["--gpu-probe", "none", "--gpu-runtime", "none"])
        agent.start()
        cluster.wait_status({"gpu-a": "ready"})
        done = cluster.hubctl("models", "cache", "tiny-model", "--node", "gpu-a")
        assert "RECAP" in done.stdout and "gpu-a" in done.stdout, done.stdout
        [cache] = wait_until(lambda: cluster.json("registry", "caches"), 20, "a cache reported")
        assert (cache["node"], cache["entry"], cache["state"]) == ("gpu-a", ENTRY, "complete")
        assert cache["verified"] and cache["connected"], cache
        held = Path(cache["path"]) / "model.gguf"
        assert held.read_bytes() == FILES["model.gguf"], held
        table = cluster.hubctl("registry", "caches").stdout.splitlines()
        assert table[0].split() == ["NODE", "ENTRY", "REVISION", "SIZE", "STATE", "VERIFIED",
                                    "PATH"]  # fmt: skip
        assert table[1].split()[:2] == ["gpu-a", ENTRY] and "yes" in table[1].split(), table
        assert [c["node"] for c in cluster.json("registry", "show", ENTRY)["caches"]] == ["gpu-a"]
        [model] = cluster.json("models")["models"]
        assert model["cached_on"] and model["cached_on"][0].startswith("gpu-a"), model
        assert "CACHED" in cluster.hubctl("models").stdout.splitlines()[0]
        assert "cached on:    gpu-a" in cluster.hubctl("models", "show", "tiny-model").stdout

        agent.terminate()
        cluster.wait_status({"gpu-a": "down"})
        down = cluster.hubctl("registry", "caches").stdout.splitlines()
        assert down[1].split()[:3] == ["gpu-a", "(down)", ENTRY], down
        assert cluster.json("registry", "caches")[0]["connected"] is False

        agent.start()
        cluster.wait_status({"gpu-a": "ready"})
        cluster.hubctl("models", "uncache", "tiny-model", "--node", "gpu-a")
        wait_until(lambda: cluster.json("registry", "caches") == [], 20, "the cache freed")
        assert not held.exists()
    finally:
        cluster.close()


def test_the_new_commands_are_listed_in_help_which_loads_no_grpc_rich_or_stubs() -> None:
    shown, modules = loaded("registry", "--help")
    assert shown.returncode == 0
    assert absent(modules, *NEVER, "grpc", "rich", "gpufleet.v1", "cli.registry_view",
                  "cli.registry_import") == []  # fmt: skip
    for command in ("show", "pull", "import", "rm", "caches"):
        assert f"  {command} " in shown.stdout, shown.stdout
    models = hubctl("models", "--help").stdout
    assert "  cache " in models and "  uncache " in models, models
    assert "--no-fetch" in hubctl("models", "switch", "--help").stdout
