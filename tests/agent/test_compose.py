"""Subprocesses and podman trouble at the edge: nothing hangs, nothing is left behind."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

from agent.compose import Completed, Podman, run_process
from agent.link import AgentLink, Identity
from agent.main import task_kinds
from agent.probes import NoProbe
from agent.projects import ProjectStore
from agent.tasks.context import TaskContext
from agent.tasks.runner import TaskRunner


def test_timeout_kills_the_whole_process_group() -> None:
    marker = "31.4159"  # a sleep only this test starts
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        asyncio.run(run_process(["sh", "-c", f"sleep {marker} & sleep {marker}; true"],
                                os.environ, 1.0))  # fmt: skip
    assert time.monotonic() - started < 5
    left = subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True, text=True)
    assert left.stdout == "", "a grandchild outlived the timeout"


def test_missing_command_is_a_clear_result() -> None:
    done = asyncio.run(run_process(["no-such-podman-here"], os.environ, 5))
    assert done.code == 127 and "not found" in done.stderr


async def hanging_podman(argv: list[str], env: Mapping[str, str], limit_s: float) -> Completed:
    await asyncio.sleep(3600)  # podman wedged
    raise AssertionError("unreachable")


def test_hello_goes_out_when_podman_hangs_and_says_it_cannot_tell(tmp_path: Path) -> None:
    store = ProjectStore(tmp_path)
    (store.root / "alpha").mkdir(parents=True)
    (store.root / "alpha" / "compose.yaml").write_text("services: {}\n")
    context = TaskContext.create(store, Podman("gpu-a", run=hanging_podman), NoProbe(), {})
    link = AgentLink("unused:1", Identity("gpu-a", "id"), NoProbe(),
                     tasks=TaskRunner(task_kinds(), context), projects_timeout_s=0.2)  # fmt: skip
    started = time.monotonic()
    hello = asyncio.run(link.hello())
    assert time.monotonic() - started < 2
    assert hello.projects_unknown and list(hello.projects) == []


def test_project_names_are_injective_and_keep_a_readable_node_prefix() -> None:
    from agent.compose import compose_name

    pairs = [("gpu.a", "chat"), ("gpu-a", "chat"), ("GPU-A", "chat"), ("gpu_a", "chat"),
             ("gpu-a", "chat-b"), ("gpu-a-chat", "b"), ("gpu", "a-chat-b")]  # fmt: skip
    names = [compose_name(node, project) for node, project in pairs]
    assert len(set(names)) == len(pairs), names
    assert compose_name("gpu-a", "chat") == compose_name("gpu-a", "chat")  # stable
    for (node, project), name in zip(pairs, names, strict=True):
        slug = node.lower().replace(".", "-")
        assert name.startswith(f"gf-{slug}-{project}-"), name  # what cleanup and people read
        assert re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name), name  # a valid compose project


def pids_with(marker: str) -> list[str]:
    found = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    return found.stdout.split()


def test_reap_kills_the_groups_a_dead_agent_left_and_nothing_else(tmp_path: Path) -> None:
    from agent.groups import Ledger

    left = subprocess.Popen(["sh", "-c", "sleep 41.4159 & sleep 41.4159"],
                            start_new_session=True)  # fmt: skip
    other = subprocess.Popen(["sh", "-c", "sleep 42.4159 & sleep 42.4159"],
                             start_new_session=True)  # fmt: skip
    try:
        wait_for = time.monotonic() + 5
        while len(pids_with("sleep 41.4159")) < 3 and time.monotonic() < wait_for:
            time.sleep(0.05)
        held = Ledger(tmp_path).recorded(left.pid)
        held.__enter__()  # the agent died inside: it never left
        # A record whose group id now belongs to someone else (another start time).
        (tmp_path / "run" / str(other.pid)).write_text(f"{Ledger(tmp_path).boot} 1\n")
        assert Ledger(tmp_path).reap() == 3  # the shell and its two sleeps
        left.wait(5)
        assert pids_with("sleep 41.4159") == []
        assert len(pids_with("sleep 42.4159")) == 3 and other.poll() is None  # sh and sleeps
        assert list((tmp_path / "run").iterdir()) == []
    finally:
        for process in (left, other):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_a_guarded_command_keeps_its_output_and_status(tmp_path: Path) -> None:
    from agent.groups import Ledger

    done = asyncio.run(run_process(["sh", "-c", "echo out; echo err >&2; exit 3"], os.environ,
                                   10, Ledger(tmp_path)))  # fmt: skip
    assert (done.code, done.stdout, done.stderr) == (3, "out\n", "err\n")
    # The record goes with the group (a process that ended before it was seen running was
    # never recorded: then there is no directory either).
    assert list((tmp_path / "run").glob("*")) == []


def test_a_ledger_that_cannot_be_written_leaves_the_run_watched(tmp_path: Path) -> None:
    """Disk full or a read-only state dir after the process started: the run goes on and
    ends normally (and is still killed on timeout) instead of escaping unwatched."""
    from agent.groups import Ledger

    (tmp_path / "run").write_text("a file where the ledger's directory belongs\n")
    done = asyncio.run(run_process(["sh", "-c", "echo ran"], os.environ, 10, Ledger(tmp_path)))
    assert (done.code, done.stdout) == (0, "ran\n")
    with pytest.raises(TimeoutError):
        asyncio.run(run_process(["sleep", "30"], os.environ, 0.2, Ledger(tmp_path)))
