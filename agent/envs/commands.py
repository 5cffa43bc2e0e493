"""A build's subprocesses: each in its own process group (a cancelled build kills pip and every
compiler under it), every output line appended to the build log and handed to a callback."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

LINE_LIMIT = 1024 * 1024  # asyncio's reader limit: compiler lines can be long


async def run_logged(argv: Sequence[str], log_file: Path, env: Mapping[str, str],
                     on_line: Callable[[str], None] | None = None,
                     cwd: Path | None = None) -> int:  # fmt: skip
    """Run `argv` to its end; its exit status (127 when it cannot start). A cancel kills its
    whole process group before the CancelledError goes on."""
    with open(log_file, "ab") as log:  # noqa: ASYNC230 (a local file, line by line)
        log.write(("$ " + " ".join(argv) + "\n").encode())
        log.flush()
        try:
            child = await asyncio.create_subprocess_exec(
                *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL, env=dict(env), cwd=cwd,
                start_new_session=True, limit=LINE_LIMIT,
            )  # fmt: skip
        except OSError as exc:
            log.write(f"cannot run {argv[0]}: {exc.strerror}\n".encode())
            return 127
        try:
            assert child.stdout is not None
            while raw := await _line(child.stdout):
                log.write(raw if raw.endswith(b"\n") else raw + b"\n")
                if on_line is not None:
                    on_line(raw.decode(errors="replace").rstrip("\r\n"))
            code = await child.wait()
        except BaseException:
            kill_group(child.pid)
            with contextlib.suppress(BaseException):
                await asyncio.shield(child.wait())
            log.write(b"(stopped: the build was cancelled)\n")
            raise
        log.write(f"(exit status {code})\n".encode())
        return code


async def _line(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.readline()
    except ValueError:  # a line over the limit: take what is there
        return await reader.read(LINE_LIMIT)


def kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
