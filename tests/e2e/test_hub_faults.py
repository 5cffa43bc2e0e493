"""Storage faults and daemon hygiene, with real processes: a database another process locks
while an operation runs, a damaged database file, a second hub on a held port, a second
agent on one state dir."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import podman
from tests.support.procs import REPO, Cluster, free_port, wait_until

CONFIGS = REPO / "tests" / "fixtures" / "switch-configs"


def healthz(cluster: Cluster) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://{cluster.http}/healthz", timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def metric(cluster: Cluster, name: str) -> float:
    with urllib.request.urlopen(f"http://{cluster.http}/metrics", timeout=20) as reply:
        for line in reply.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"no {name} in /metrics")


def refused_start(*args: str) -> str:
    """Start a hub that must refuse: exit 2 and one line of its own (after its log)."""
    done = subprocess.run([sys.executable, "-m", "hub", *args], capture_output=True, text=True,
                          timeout=60, cwd=REPO)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    [line] = [line for line in done.stderr.splitlines() if line.startswith("gpufleet-hub:")]
    assert done.stderr.strip().endswith(line)
    return line


@pytest.fixture
def plain(tmp_path: Path) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path, None, secure=False)
    cluster.start_hub()
    try:
        yield cluster
    finally:
        cluster.close()


def test_a_second_hub_on_a_held_port_exits_2_and_the_first_keeps_serving(
    plain: Cluster, tmp_path: Path
) -> None:
    line = refused_start("--listen", plain.address, "--state-dir", str(tmp_path / "second"),
                         "--insecure")  # fmt: skip
    assert f"cannot listen on {plain.address}: address already in use" in line
    assert "--listen" in line
    assert plain.hub.running and plain.hubctl("nodes").returncode == 0


def test_a_damaged_database_refuses_the_start_with_one_line(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, None, secure=False)
    cluster.start_hub()
    cluster.agent("gpu-a", inventory="a5500-a400.yaml").start()
    cluster.wait_status({"gpu-a": "ready"})
    cluster.close()  # killed, as a power loss would
    database = tmp_path / "hub" / "hub.db"
    with sqlite3.connect(database) as plain:
        plain.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with database.open("r+b") as raw:  # every page but the first (the schema) scribbled on
        for offset in range(4096, database.stat().st_size, 4096):
            raw.seek(offset + 8)
            raw.write(b"\xa5" * 256)
    line = refused_start("--listen", f"127.0.0.1:{free_port()}", "--state-dir",
                         str(tmp_path / "hub"), "--insecure")  # fmt: skip
    assert line.startswith(f"gpufleet-hub: database {database} is damaged"), line
    assert "restore it from a backup, or move it away" in line


def test_a_second_agent_on_one_state_dir_exits_2_naming_the_first(plain: Cluster) -> None:
    first = plain.agent("gpu-a", inventory="a5500-a400.yaml").start()
    plain.wait_status({"gpu-a": "ready"})
    second = plain.agent("gpu-a", inventory="a5500-a400.yaml", state="gpu-a").start()
    assert second.process is not None
    assert second.process.wait(30) == 2
    state_dir = plain.tmp / "agents" / "gpu-a"
    assert first.process is not None
    expected = f"state dir {state_dir} is in use by another agent (pid {first.process.pid})"
    assert expected in second.log(), second.log()
    assert "Traceback" not in second.log()
    assert first.running and plain.statuses() == {"gpu-a": "ready"}


def ops(cluster: Cluster) -> tuple[list[dict[str, Any]], str]:
    done = cluster.hubctl("ops", "--json")
    return json.loads(done.stdout), done.stderr


SLOW = """\
x-gpufleet:
  description: healthy after ${LOAD_DELAY} seconds
  use_case: tests
  services:
    web:
      vram_gb: 0
      gpu_count: 0
      health: {url: "http://127.0.0.1:${WEB_PORT}/health", timeout: 60, interval: 0.2}
services:
  web:
    image: localhost/gpufleet-test:latest
    command:
      - sh
      - -c
      - >-
        mkdir -p /srv && httpd -p 8080 -h /srv &&
        sleep ${LOAD_DELAY} && echo ok > /srv/health && sleep 3600
    ports: ["127.0.0.1:${WEB_PORT}:8080"]
    stop_signal: SIGKILL
"""


def test_an_operation_ends_while_the_database_is_locked_and_its_outcome_lands_after(
    tmp_path: Path, image: str
) -> None:
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "slow.yaml").write_text(SLOW)
    cluster = Cluster(tmp_path, None, configs=configs, secure=False)
    node = f"f{free_port()}"
    try:
        cluster.start_hub()
        extra = ["--gpu-probe", "none", "--gpu-runtime", "none", "--env", "LOAD_DELAY=4",
                 "--env", f"WEB_PORT={free_port()}"]  # fmt: skip
        cluster.agent(node, extra=extra, env=podman.env()).start()
        cluster.wait_status({node: "ready"})

        started = cluster.hubctl("switch", "slow", "--node", node, "--detach")
        operation_id = started.stdout.strip().split()[-1]
        holder = sqlite3.connect(tmp_path / "hub" / "hub.db", isolation_level=None, timeout=10)
        holder.execute("BEGIN EXCLUSIVE")  # another process holds the database's write lock

        def ended() -> str:
            mine = [o for o in ops(cluster)[0] if o["id"] == operation_id]
            return str(mine[0]["status"]) if mine and mine[0]["status"] != "running" else ""

        # The stored record still says running; the hub shows the outcome it keeps.
        assert wait_until(ended, 90, "the switch to end while its writes wait") == "succeeded"
        _, warning = ops(cluster)
        [line] = warning.strip().splitlines()
        assert line.startswith("hubctl: warning: the hub cannot write its database "
                               "(database is locked)"), line  # fmt: skip
        status, body = healthz(cluster)
        assert status == 503 and "database is locked" in body
        assert metric(cluster, "gpufleet_store_ok") == 0
        assert metric(cluster, "gpufleet_store_write_failures_total") >= 1
        refused = cluster.hubctl("stop", node, "--detach", check=False)
        assert refused.returncode != 0 and refused.stdout == ""
        [line] = refused.stderr.strip().splitlines()
        assert "the hub cannot write its database (database is locked)" in line, line
        assert "kept and retried until it lands: database is locked" in cluster.hub.log()
        before = metric(cluster, "gpufleet_store_pending_writes")
        time.sleep(3)  # six heartbeat intervals: their writes merge into one batch
        assert metric(cluster, "gpufleet_store_pending_writes") - before <= 2

        holder.execute("COMMIT")
        holder.close()
        wait_until(lambda: healthz(cluster)[0] == 200, 30, "/healthz to be OK again")
        _, warning = ops(cluster)
        assert warning == "" and metric(cluster, "gpufleet_store_ok") == 1

        cluster.hub.terminate()  # what was kept in memory is in the database now
        cluster.start_hub()
        [stored] = [o for o in ops(cluster)[0] if o["id"] == operation_id]
        assert stored["status"] == "succeeded", stored
        state = {n["node"]: n for n in cluster.json("status")}[node]
        assert (state["state"], state["configuration"]) == ("ready", "slow")
    finally:
        cluster.close()
        podman.remove_projects(f"gf-{node}-")


FAKE_PODMAN = """#!/bin/sh
# podman for the test: lists nothing, answers the agent's preflight (`podman info`) with an
# empty report; anything else (podman-compose's first call is `podman --version`) hangs in a
# small process tree.
case "$1" in ps) echo "[]"; exit 0 ;; info) echo "{{}}"; exit 0 ;; esac
sleep {marker} & sleep {marker}
"""


def pids_with(text: str) -> list[str]:
    found = subprocess.run(["pgrep", "-f", text], capture_output=True, text=True, check=False)
    return found.stdout.split()


def test_an_agent_killed_during_a_compose_run_leaves_no_process_behind(plain: Cluster) -> None:
    configs = plain.tmp / "configs"
    configs.mkdir()
    (configs / "slow.yaml").write_text(SLOW)
    plain.hub.terminate()
    plain.configs = configs
    plain.start_hub()
    marker = f"7{free_port()}.5"  # a sleep only this test starts
    fake = plain.tmp / "bin"
    fake.mkdir()
    (fake / "podman").write_text(FAKE_PODMAN.format(marker=marker))
    (fake / "podman").chmod(0o755)
    path = {"PATH": f"{fake}:{os.environ['PATH']}"}
    extra = ["--gpu-probe", "none", "--gpu-runtime", "none", "--env", "LOAD_DELAY=1",
             "--env", f"WEB_PORT={free_port()}"]  # fmt: skip
    agent = plain.agent("gpu-a", extra=extra, env=path).start()
    plain.wait_status({"gpu-a": "ready"})
    plain.hubctl("switch", "slow", "--node", "gpu-a", "--detach")
    state_dir = plain.tmp / "agents" / "gpu-a"
    wait_until(lambda: len(pids_with(f"sleep {marker}")) >= 2, 60, "compose to hang in podman")
    assert pids_with(f"podman_compose.*{state_dir}")  # podman-compose itself, under the agent
    assert list((state_dir / "run").iterdir())  # the running group is recorded

    agent.kill()  # SIGKILL: no handler runs in the agent
    wait_until(lambda: not pids_with(f"sleep {marker}") and not pids_with(str(state_dir)), 15,
               "the agent's compose run and its podman to be gone")  # fmt: skip

    restarted = plain.agent("gpu-a", extra=extra, env=path).start()
    plain.wait_status({"gpu-a": "ready"})
    assert restarted.running and list((state_dir / "run").iterdir()) == []  # reaped, forgotten
