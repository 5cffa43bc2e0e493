"""Bad input to hubctl, against a real hub and without one: every refusal is one line on
stderr starting `hubctl: `, a non-zero exit, no traceback, no `internal error`, no Python
exception class."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.procs import REPO, Cluster, free_port

EXCEPTION_CLASS = re.compile(r"\b[A-Z][A-Za-z]*(Error|Exception)\b")
HUGE = "99999999999"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    fleet = Cluster(tmp_path_factory.mktemp("bad-input"), None, secure=False)
    fleet.start_hub()
    yield fleet.address
    fleet.close()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("files")
    (root / "latin1.yaml").write_bytes(b"name: caf\xe9\nservices: {}\n")
    (root / "config-latin1.yaml").write_bytes(b"hubs: {}\ndefault: caf\xe9\n")
    (root / "config-broken.yaml").write_text("hubs: [1, 2\n")
    (root / "a-directory").mkdir()
    return root


def refused(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    shown = result.stderr
    assert result.returncode != 0, (result.stdout, shown)
    assert result.stdout == "", result.stdout
    lines = shown.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hubctl: "), shown
    assert "Traceback" not in shown and "internal error" not in shown, shown
    assert not EXCEPTION_CLASS.search(shown), shown
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def hubctl(*argv: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if config is not None:
        env["GPUFLEET_CONFIG"] = str(config)
    return subprocess.run(
        [sys.executable, "-m", "cli", *argv], capture_output=True, text=True, timeout=60,
        cwd=REPO, env=env,
    )  # fmt: skip


AGAINST_A_HUB = [
    (["nodes", "show", ""], "no node named ''"),
    (["nodes", "show", "x" * 5000], "no node named 'xxxx"),
    (["nodes", "bogus"], "No such command 'bogus'"),
    (["nodes", "remove", "n" * 3000], "no node named 'nnnn"),
    (["drain", "n" * 3000], "unknown node nnnn"),
    (["switch", "c" * 3000, "--all"], "`hubctl configs` lists them"),
    (["ops", "cancel", "o" * 3000], "`hubctl ops` lists them"),
    (["nodes", "--bogus"], "No such option: --bogus"),
    (["ops", "--limit", HUGE], f"Invalid value for '--limit': {HUGE} is out of range"),
    (["ops", "--limit", "100000"], "limit 100000 is out of range: 1..500 operations"),
    (["ops", "--limit", "-1"], "Invalid value for '--limit'"),
    (["ops", "--limit", "zero"], "Invalid value for '--limit'"),
    (["ops", "show", ""], "no operation ''"),
    (["audit", "--limit", HUGE], "Invalid value for '--limit'"),
    (["audit", "--limit", "5000"], "limit 5000 is out of range: 1..1000 entries"),
    (["switch", "x", "--all", "--serial", HUGE], "Invalid value for '--serial'"),
    (["switch", "x", "--all", "--max-fail", "nan"], "invalid --max-fail 'nan'"),
    (["switch", "x", "--all", "--max-fail", "1e999%"], "invalid --max-fail"),
    (["stop", "--all", "--serial", "4294967296"], "4294967296 is out of range"),
    (["stop", "--all", "--serial", "-5"], "Invalid value for '--serial'"),
    (["gpus", "--watch", "--interval", "inf"], "inf is not a finite number"),
    (["gpus", "--interval", "nan"], "Invalid value for '--interval'"),
    (["assign", "preview", "--time-limit", "inf"], "Invalid value for '--time-limit'"),
    (["assign", "preview", "--time-limit", "-1"], "Invalid value for '--time-limit'"),
    (["tokens", "create", "--ttl", HUGE + "99"], "invalid --ttl"),
    (["configs", "validate", "{files}/latin1.yaml"], "latin1.yaml: not UTF-8"),
    (["configs", "validate", "{files}/a-directory"], "cannot read"),
    (["configs", "validate", "{files}/missing.yaml"], "cannot read"),
    (["models", "show", ""], "model name '' is not one"),
    (["models", "show", "m" * 5000], "is not one: give a model's name or alias"),
    (["models", "show", "nope"], "model 'nope' not found"),
    (["models", "--json", "show", "nope"], "--json goes after the subcommand"),
    (["models", "validate", "{files}/latin1.yaml"], "latin1.yaml: not UTF-8"),
    (["models", "validate", "{files}/a-directory"], "cannot read"),
    (["models", "convert", "{files}/missing.yaml"], "cannot read"),
    (["models", "convert", "{files}/latin1.yaml", "--to", "k8s"], "--to 'k8s' is not a format"),
    (["models", "switch", "m" * 5000, "--all"], "is not one: give a model's name or alias"),
    (["models", "switch", "nope", "--all"], "model 'nope' not found"),
    (["models", "switch", "llama3-8b"], "name the nodes (--node gpu-a)"),
    (["models", "switch", "llama3-8b", "--node", "nowhere"], "unknown node nowhere"),
    (["models", "switch", "llama3-8b", "--all", "--gpus", "0,x"], "invalid --gpus '0,x'"),
    (["models", "switch", "llama3-8b", "--all", "--gpus", "0,0"], "a GPU is named twice"),
    (
        ["models", "switch", "llama3-8b", "--all", "--gpu-count", "65"],
        "Invalid value for '--gpu-count'",
    ),
    (["models", "switch", "llama3-8b", "--all", "--port", "70000"], "Invalid value for '--port'"),
    (["models", "switch", "llama3-8b", "--all", "--max-fail", "nan"], "invalid --max-fail"),
    (["models", "stop", "nope"], "model 'nope' not found"),
    (["models", "stop", "llama3-8b"], "model llama31-8b-instruct runs on no node"),
    (["models", "stop", "llama3-8b", "--node", "nowhere"], "unknown node nowhere"),
    (["models", "running", "nope"], "model 'nope' not found"),
    (["models", "logs", "llama3-8b"], "Missing option '--node'"),
    (["models", "logs", "llama3-8b", "--node", "nowhere"], "no node named 'nowhere'"),
    (["models", "logs", "llama3-8b", "--node", "a,b"], "--node takes one node name"),
    (["models", "logs", "llama3-8b", "--node", "a", "--lines", "0"], "Invalid value for '--lines'"),
]


@pytest.mark.parametrize(
    ("argv", "fragment"), AGAINST_A_HUB, ids=[" ".join(a)[:40] for a, _ in AGAINST_A_HUB]
)
def test_bad_input_to_a_hub_gets_one_line(
    hub: str, files: Path, argv: list[str], fragment: str
) -> None:
    argv = [arg.replace("{files}", str(files)) for arg in argv]
    result = hubctl("--hub", hub, "--insecure", *argv)
    refused(result, fragment)
    assert len(result.stderr) < 400, result.stderr[:400]  # no echo of a huge value


def test_bad_hub_addresses_and_config_files(files: Path) -> None:
    refused(hubctl("--hub", "::::", "nodes"), "--hub '::::' is not HOST:PORT")
    refused(hubctl("--hub", "", "nodes"), "is not HOST:PORT")
    refused(hubctl("--hub", "h" * 300 + ":1", "nodes"), "is not HOST:PORT")
    refused(hubctl("--hub", "a" * 64 + ".x:1", "nodes"), "each part of a host name has 1 to 63")
    refused(hubctl("--hub", "bad\x01host:1", "nodes"), "is not HOST:PORT")
    refused(hubctl("--hub", f"127.0.0.1:{free_port()}", "nodes"), "connection refused")
    refused(hubctl("nodes", config=files / "config-latin1.yaml"), "cannot read", "fix or remove")
    refused(hubctl("nodes", config=files / "config-broken.yaml"), "cannot read", "fix or remove")
    refused(hubctl("nodes", config=files / "a-directory"), "cannot read")
    refused(hubctl("--insecure"), "Missing command")
