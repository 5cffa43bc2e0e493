"""Bad input and unreachable hubs: one clear line, a non-zero exit, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.procs import REPO, free_port


def run(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *argv], capture_output=True, text=True, timeout=60, cwd=REPO, env=env
    )


COMMANDS = [["nodes"], ["gpus"], ["nodes", "show", "x"], ["gpus", "--json"]]


@pytest.mark.parametrize("command", COMMANDS)
def test_hubctl_without_a_hub(command: list[str]) -> None:
    address = f"127.0.0.1:{free_port()}"
    result = run("-m", "cli", "--hub", address, *command)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"hubctl: cannot reach hub at {address}: connection refused "
        "(is the hub running? start one with `hubctl up`)"
    ]


def test_hubctl_reads_the_hub_from_the_environment() -> None:
    import os

    address = f"127.0.0.1:{free_port()}"
    result = run("-m", "cli", "nodes", env={**os.environ, "GPUFLEET_HUB": address})
    assert result.returncode == 2 and address in result.stderr


def one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """The failure is the last line (daemons may have logged their start before it)."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(("gpufleet-hub: ", "gpufleet-agent: ")), result.stderr
    for fragment in fragments:
        assert fragment in last


def test_agent_rejects_bad_input(tmp_path: Path) -> None:
    state = ["--state-dir", str(tmp_path / "s")]
    one_line_error(
        run("-m", "agent", "--inventory", str(tmp_path / "missing.yaml"), *state),
        "missing.yaml",
        "cannot read it",
    )
    one_line_error(run("-m", "agent", "--labels", "role", *state), "invalid label 'role'")
    one_line_error(run("-m", "agent", "--name", "bad name", *state), "invalid node name")
    (tmp_path / "file").write_text("")
    one_line_error(
        run("-m", "agent", "--state-dir", str(tmp_path / "file" / "x")),
        "choose a writable --state-dir",
    )


def test_hub_rejects_bad_input(tmp_path: Path) -> None:
    one_line_error(
        run("-m", "hub", "--state-dir", str(tmp_path), "--db", "nonsense"),
        "invalid --db URL 'nonsense'",
    )
    one_line_error(
        run(
            "-m",
            "hub",
            "--state-dir",
            str(tmp_path),
            "--db",
            "postgresql+psycopg://u:secret@127.0.0.1:1/x",
        ),
        "cannot open database",
        "***",
    )
    one_line_error(
        run("-m", "hub", "--state-dir", str(tmp_path), "--listen", "256.1.1.1:1"),
        "cannot listen on 256.1.1.1:1",
    )
