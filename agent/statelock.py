"""One agent per state directory: an exclusive flock on STATE_DIR/agent.lock.

Two agents on one state dir share an identity: each would replace the other's stream on
the hub forever. The lock is held for the life of the process (the kernel drops it when the
process dies, however it dies) and the file names the holder's pid for the error line.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_FILE = "agent.lock"


class StateDirBusy(Exception):
    """Another agent holds the state dir; the message names it and what to do."""


class StateLock:
    def __init__(self, fd: int, path: Path) -> None:
        self.fd = fd
        self.path = path

    def release(self) -> None:
        os.close(self.fd)


def lock_state_dir(state_dir: Path) -> StateLock:
    """Take the state dir's lock or raise StateDirBusy (OSError when it cannot be made)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise StateDirBusy(
            f"state dir {state_dir} is in use by another agent (pid {holder}): stop that "
            "agent first, or give this one its own --state-dir"
        ) from None
    except OSError:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return StateLock(fd, path)
