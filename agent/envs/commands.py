"""A build's subprocesses: each leads a session of its own, and a cancelled build kills the whole
session (pip, cmake, ninja and every compiler: ninja puts each compile in a process group of its
own, so killing pip's group alone would leave them running). Every output line is appended to
the build log and handed to a callback. The session is recorded (SESSION_FILE: pid and start
time) so an agent that restarts mid-build kills what its predecessor left compiling."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from agent.processes import read_stat

LINE_LIMIT = 1024 * 1024  # asyncio's reader limit: compiler lines can be long
SESSION_FILE = "build.session"


async def run_logged(argv: Sequence[str], log_file: Path, env: Mapping[str, str],
                     on_line: Callable[[str], None] | None = None,
                     session_file: Path | None = None) -> int:  # fmt: skip
    """Run `argv` to its end; its exit status (127 when it cannot start). A cancel kills its
    whole process group before the CancelledError goes on."""
    with open(log_file, "ab") as log:  # noqa: ASYNC230 (a local file, line by line)
        log.write(("$ " + " ".join(argv) + "\n").encode())
        log.flush()
        try:
            child = await asyncio.create_subprocess_exec(
                *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL, env=dict(env),
                start_new_session=True, limit=LINE_LIMIT,
            )  # fmt: skip
        except OSError as exc:
            log.write(f"cannot run {argv[0]}: {exc.strerror}\n".encode())
            return 127
        if session_file is not None:
            record_session(session_file, child.pid)
        try:
            assert child.stdout is not None
            while raw := await _line(child.stdout):
                log.write(raw if raw.endswith(b"\n") else raw + b"\n")
                if on_line is not None:
                    on_line(raw.decode(errors="replace").rstrip("\r\n"))
            code = await child.wait()
        except BaseException:
            kill_session(child.pid)
            with contextlib.suppress(BaseException):
                await asyncio.shield(child.wait())
            log.write(b"(stopped: the build was cancelled)\n")
            raise
        log.write(f"(exit status {code})\n".encode())
        return code


def record_session(session_file: Path, pid: int) -> None:
    found = read_stat(pid)
    session_file.write_text(f"{pid} {found.start if found else 0}\n")


async def _line(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.readline()
    except ValueError:  # a line over the limit: take what is there
        return await reader.read(LINE_LIMIT)


def kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def kill_session(leader: int, proc: Path = Path("/proc")) -> int:
    """SIGKILL every process of the session `leader` leads (or led); how many there were."""
    kill_group(leader)
    killed = 0
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        found = read_stat(int(entry.name), proc)
        if found is not None and found.session == leader and found.state not in ("Z", "X"):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
    return killed


def kill_recorded(session_file: Path) -> int:
    """Kill what a build recorded in `session_file` left running: its session, when its leader
    is the recorded process (pid and start time) or gone (a pid reused by another process that
    leads no session of that id is left alone)."""
    try:
        pid_text, start_text = session_file.read_text().split()[:2]
        pid, start = int(pid_text), int(start_text)
    except (OSError, ValueError):
        return 0
    leader = read_stat(pid)
    if leader is not None and leader.start != start and leader.session != pid:
        return 0
    return kill_session(pid)
