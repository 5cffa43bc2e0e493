"""Starting supervisors (agent/supervise.py) without a Python start-up on the way to the server.

A supervisor is a fresh interpreter: on a small host its start-up alone (60-130 ms) would delay
every model server it starts. So once a supervisor has been launched, the next one is started
ahead of need, detached in its own session and waiting on a pipe (`--standby`); a launch hands
it its orders (one JSON line) and starts another standby behind it. Without a standby (the
first launch, or one that died) a supervisor is started directly, as before.

A standby left over when the agent exits reads the end of its input and exits; it never runs
anything it was not told to.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from agent import supervise

SUPERVISOR = Path(supervise.__file__)
# -I -S: the supervisor needs the standard library alone, and site-packages' .pth files would
# delay it by as long again.
INTERPRETER = (sys.executable, "-I", "-S", str(SUPERVISOR))


class LaunchError(Exception):
    pass


def _detached(argv: Sequence[str], cwd: Path, env: Mapping[str, str] | None,
              stdin: int) -> subprocess.Popen[bytes]:  # fmt: skip
    """Its own session, no terminal, none of the agent's files (close_fds: the state dir's lock
    and the hub's sockets stay the agent's). A fork and exec, nothing waited for."""
    return subprocess.Popen(
        list(argv), cwd=cwd, env=None if env is None else dict(env), stdin=stdin,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        close_fds=True,
    )  # fmt: skip


class Launcher:
    def __init__(self, cwd: Path, standby: bool = True) -> None:
        self.cwd = cwd  # where a standby waits (it moves to its project's directory)
        self.keep_standby = standby
        self._standby: subprocess.Popen[bytes] | None = None

    def launch(self, directory: Path, command: Sequence[str], env: Mapping[str, str],
               rotate_bytes: int, keep: int) -> subprocess.Popen[bytes]:  # fmt: skip
        """A supervisor of `command` (the server's argv) in `directory`, running."""
        try:
            started = self._hand_over(directory, command, env, rotate_bytes, keep)
            if started is None:
                argv = [*INTERPRETER, "--dir", str(directory), "--rotate-bytes",
                        str(rotate_bytes), "--keep", str(keep), "--", *command]  # fmt: skip
                started = _detached(argv, directory, env, subprocess.DEVNULL)
        except OSError as exc:
            raise LaunchError(exc.strerror or str(exc)) from None
        if self.keep_standby:
            self._prepare()
        return started

    def _hand_over(self, directory: Path, command: Sequence[str], env: Mapping[str, str],
                   rotate_bytes: int, keep: int) -> subprocess.Popen[bytes] | None:  # fmt: skip
        standby, self._standby = self._standby, None
        if standby is None or standby.poll() is not None or standby.stdin is None:
            return None
        order = {"dir": str(directory), "rotate_bytes": rotate_bytes, "keep": keep,
                 "command": list(command), "env": dict(env)}  # fmt: skip
        try:
            standby.stdin.write(json.dumps(order).encode() + b"\n")
            standby.stdin.close()
        except OSError:  # it died meanwhile: start one directly
            with contextlib.suppress(OSError):
                standby.kill()
            standby.wait()
            return None
        return standby

    def _prepare(self) -> None:
        with contextlib.suppress(OSError):
            self._standby = _detached([*INTERPRETER, "--standby"], self.cwd, None,
                                      subprocess.PIPE)  # fmt: skip

    def close(self) -> None:
        """The standby exits (end of input); it is reaped if it already has."""
        standby, self._standby = self._standby, None
        if standby is not None and standby.stdin is not None:
            with contextlib.suppress(OSError):
                standby.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                standby.wait(0.5)
