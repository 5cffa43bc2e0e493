"""`gpufleet-agent join` against a real hub: a name clash suggests --name, the hub is
remembered for the next start, the start hint fits how gpufleet is installed, and the token
can come from a file, stdin or the environment (never the command line)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.join import unit_installed
from tests.support.procs import REPO, Cluster, Daemon

SQLITE = pytest.mark.parametrize("db_url", [None], ids=["sqlite"])


def agent(cluster: Cluster, *args: str, stdin: str = "", env: dict[str, str] | None = None
          ) -> subprocess.CompletedProcess[str]:  # fmt: skip
    base = {k: v for k, v in os.environ.items() if k not in ("GPUFLEET_HUB", "GPUFLEET_JOIN_TOKEN")}
    return subprocess.run(
        [sys.executable, "-m", "agent", *args], input=stdin, capture_output=True, text=True,
        timeout=60, cwd=REPO, env={**base, **(env or {})},
    )  # fmt: skip


def join(cluster: Cluster, state: Path, *args: str, stdin: str = "",
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    port = cluster.enroll.rpartition(":")[2]
    return agent(cluster, "join", "--hub", cluster.address, "--state-dir", str(state),
                 "--enroll-port", port, *args, stdin=stdin, env=env)  # fmt: skip


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@SQLITE
def test_a_name_clash_suggests_another_name_and_keeps_the_token(
    cluster: Cluster, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(cluster.create_token() + "\n")
    first = join(cluster, tmp_path / "a", "--name", "gpu-a", "--token-file", str(token_file))
    assert first.returncode == 0, first.stderr

    token = cluster.create_token()
    clash = join(cluster, tmp_path / "b", "--name", "gpu-a", env={"GPUFLEET_JOIN_TOKEN": token})
    line = one_line(clash)
    assert "node/gpu-a is already enrolled" in line
    assert "--name OTHER" in line and "hubctl nodes remove gpu-a" in line
    assert not (tmp_path / "b" / "tls" / "agent.crt").exists()
    # The clash did not spend the token: the suggested fix works with it.
    again = join(cluster, tmp_path / "b", "--name", "gpu-b", "--token-file", "-",
                 stdin=token + "\n")  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert token not in " ".join(again.args)  # never on the command line, so never in ps


@SQLITE
def test_join_remembers_the_hub_and_prints_how_to_start(cluster: Cluster, tmp_path: Path) -> None:
    state = tmp_path / "gpu-r"
    joined = join(cluster, state, "--name", "gpu-r",
                  env={"GPUFLEET_JOIN_TOKEN": cluster.create_token()})  # fmt: skip
    assert joined.returncode == 0, joined.stderr
    assert (state / "hub").read_text().strip() == cluster.address
    if unit_installed():
        assert joined.stdout.strip().endswith("start the agent: systemctl start gpufleet-agent")
    else:  # a pip install: no unit to start
        assert "systemctl" not in joined.stdout
        assert joined.stdout.strip().endswith(
            f"start the agent: gpufleet-agent --state-dir {state}"
        )

    # The printed command is all it takes: no --hub.
    argv = ["-m", "agent", "--state-dir", str(state), "--inventory",
            str(REPO / "configs" / "inventories" / "a5500-a400.yaml")]  # fmt: skip
    daemon = Daemon("agent-gpu-r", argv, tmp_path / "logs" / "agent-gpu-r.log")
    cluster.daemons.append(daemon)
    daemon.start()
    cluster.wait_status({"gpu-r": "ready"})
    assert f"connected to hub {cluster.address} as gpu-r" in daemon.log()


@SQLITE
def test_bad_token_sources_are_one_line(cluster: Cluster, tmp_path: Path) -> None:
    state = tmp_path / "s"
    missing = one_line(join(cluster, state, "--token-file", str(tmp_path / "nope")))
    assert missing == (f"gpufleet-agent: cannot read --token-file {tmp_path / 'nope'}: "
                       "No such file or directory")  # fmt: skip
    empty = tmp_path / "empty"
    empty.write_text("\n")
    assert "is empty: write the token from `hubctl tokens create`" in one_line(
        join(cluster, state, "--token-file", str(empty)))  # fmt: skip
    assert "is empty" in one_line(join(cluster, state, "--token-file", "-", stdin=""))
    none = one_line(join(cluster, state))
    assert none.startswith("gpufleet-agent: no join token: pass --token-file PATH")
    # --token-file wins over the environment.
    valid = tmp_path / "valid"
    valid.write_text(cluster.create_token())
    joined = join(cluster, state, "--name", "gpu-s", "--token-file", str(valid),
                  env={"GPUFLEET_JOIN_TOKEN": "not-a-token"})  # fmt: skip
    assert joined.returncode == 0, joined.stderr
    assert not (tmp_path / "nope").exists() and not list(tmp_path.glob("s/hub.*"))
