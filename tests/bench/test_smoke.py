"""Every benchmark in bench/ runs at its smallest size, as a real `python -m bench.X`, exits 0
and prints its figures; a benchmark without a smoke run fails here."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.bench.smokes import SMOKES
from tests.support.procs import REPO

BENCH = REPO / "bench"
MAIN_GUARD = 'if __name__ == "__main__":'


def benchmarks() -> set[str]:
    """The modules of bench/ that run as a program."""
    return {path.stem for path in BENCH.glob("*.py") if MAIN_GUARD in path.read_text()}


def test_every_benchmark_has_a_smoke_run() -> None:
    missing = sorted(benchmarks() - SMOKES.keys())
    assert not missing, f"add a smallest run to tests/bench/smokes.py SMOKES for: {missing}"


@pytest.mark.parametrize("name", sorted(SMOKES))
def test_benchmark_runs_at_its_smallest_size(name: str, request: pytest.FixtureRequest) -> None:
    smoke = SMOKES[name]
    argv = [sys.executable, "-m", f"bench.{name}", *smoke.args, *smoke.prepare(request)]
    code, out, err = run(argv, smoke.timeout)
    said = f"$ {' '.join(argv)}\n--- stdout\n{out[-4000:]}\n--- stderr\n{err[-4000:]}"
    assert code == 0, f"exited with {code}\n{said}"
    lines = out.splitlines()
    absent = [p for p in smoke.figures if not any(re.fullmatch(p, line) for line in lines)]
    assert not absent, f"no line matches {absent}\n{said}"


def run(argv: list[str], timeout: float) -> tuple[int, str, str]:
    """Run a benchmark in a process group of its own, its output in files (so a process it
    leaves behind cannot hold a pipe open); on timeout, SIGTERM the group (a benchmark stops
    its daemons on SIGTERM), then SIGKILL what is left. Fails when the benchmark left a
    process of its group running."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(
            argv, cwd=REPO, stdout=out, stderr=err, text=True, start_new_session=True
        )
        problem = ""
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            problem = f"ran over {timeout:g} s; "
            os.killpg(process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(30)
        left = kill_group(process.pid)
        process.wait()
        if left:
            problem += f"left processes running: {left}"
        out.seek(0)
        err.seek(0)
        said, complaint = out.read(), err.read()
    if problem:
        pytest.fail(f"{' '.join(argv)} {problem}\n{said[-4000:]}\n{complaint[-4000:]}")
    return process.returncode, said, complaint


def kill_group(pgid: int) -> list[str]:
    """SIGKILL every live process of group `pgid`; their command lines."""
    left = group(pgid)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while group(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return list(left.values())


def group(pgid: int) -> dict[int, str]:
    """Live (not zombie) processes whose process group is `pgid`, with their command lines."""
    found = {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            found[int(proc.name)] = cmdline
    return found
