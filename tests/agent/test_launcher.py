"""Supervisors started ahead of need (agent/launcher.py): real processes, no server needed."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from agent import supervise
from agent.launcher import Launcher


def wait_for(path: Path, seconds: float = 10) -> str:
    deadline = time.monotonic() + seconds
    while not path.is_file():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)
    return path.read_text()


def echo(word: str) -> list[str]:
    return [sys.executable, "-c", f"import os; print({word!r}, os.environ['WORD'])"]


def test_the_second_launch_hands_its_orders_to_the_standby(tmp_path: Path) -> None:
    launcher = Launcher(tmp_path)
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    one = launcher.launch(first, echo("one"), {"WORD": "1"}, 1024, 1)
    standby = launcher._standby
    assert standby is not None and standby.poll() is None  # waiting for orders
    two = launcher.launch(second, echo("two"), {"WORD": "2"}, 1024, 1)
    assert two is standby  # no new interpreter on the way to the server
    assert launcher._standby is not None and launcher._standby is not two
    for directory, word in ((first, "one 1"), (second, "two 2")):
        assert wait_for(directory / supervise.EXIT_FILE).strip() == "0"
        assert word in (directory / supervise.LOG_FILE).read_text()
    one.wait(10)
    two.wait(10)
    left = launcher._standby
    launcher.close()
    assert left.wait(10) == 0  # end of input: it exits without running anything
    assert launcher._standby is None


def test_a_dead_standby_is_replaced_by_a_direct_start(tmp_path: Path) -> None:
    launcher = Launcher(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    launcher.launch(tmp_path / "a", echo("one"), {"WORD": "1"}, 1024, 1).wait(10)
    standby = launcher._standby
    assert standby is not None
    standby.kill()
    standby.wait()
    started = launcher.launch(tmp_path / "b", echo("two"), {"WORD": "2"}, 1024, 1)
    assert started.pid != standby.pid
    assert wait_for(tmp_path / "b" / supervise.EXIT_FILE).strip() == "0"
    assert "two 2" in (tmp_path / "b" / supervise.LOG_FILE).read_text()
    started.wait(10)
    launcher.close()


def test_a_standby_runs_in_its_own_session(tmp_path: Path) -> None:
    launcher = Launcher(tmp_path)
    (tmp_path / "a").mkdir()
    launcher.launch(tmp_path / "a", echo("one"), {"WORD": "1"}, 1024, 1).wait(10)
    standby = launcher._standby
    assert standby is not None
    assert os.getsid(standby.pid) == standby.pid  # survives the agent's session ending
    launcher.close()
