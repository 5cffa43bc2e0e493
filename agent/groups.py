"""Process groups the agent owns: podman-compose and podman never outlive the agent.

Each command runs in its own process group under a small `sh` guard. The guard gets
SIGTERM when the agent dies, however it dies (PR_SET_PDEATHSIG, set by setpriv before it
execs the guard), and then SIGKILLs its whole group: podman-compose and every podman it
started. The kernel sends the death signal to the direct child only, hence the guard.

For what even that misses (the agent killed before setpriv ran, a guard SIGKILLed by hand,
no setpriv on the host), every group is recorded in STATE_DIR/run/ while it runs, with the
boot and the leader's start time, and the next agent on that state dir kills what is left
of them (`reap`) before it runs anything; the state dir's lock makes sure no live agent
owns them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

RUN_DIR = "run"
# The guard: the command in the background, its status as the guard's; on SIGTERM (the
# agent died) the whole group, guard included, is killed.
GUARD = ["sh", "-c", 'trap "kill -KILL 0" TERM; "$@" & wait $!', "gpufleet-guard"]


def guarded(argv: list[str]) -> list[str]:
    """`argv` under the guard, which setpriv (util-linux) starts with SIGTERM as its parent
    death signal. Not a preexec_fn: Python code between fork and exec in a process that
    runs gRPC threads can crash the child."""
    setpriv = shutil.which("setpriv")
    death = [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []
    return [*death, *GUARD, *argv]


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _stat(pid: int) -> tuple[int, int] | None:
    """(process group, start time in clock ticks since boot) of a live process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the name may hold spaces and ')'
    return int(fields[2]), int(fields[19])


class Ledger:
    """The agent's running process groups, one file each under STATE_DIR/run/."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir / RUN_DIR
        self.boot = _boot_id()

    @contextlib.contextmanager
    def recorded(self, pgid: int) -> Iterator[None]:
        """Record the group while it runs. A record that cannot be written (disk full, a
        read-only state dir) is logged, never raised: the caller has already started the
        process and must go on watching it (and killing it on timeout or cancellation)."""
        found = _stat(pgid)
        path = self.dir / str(pgid)
        if found is not None:
            try:
                self.dir.mkdir(parents=True, exist_ok=True)
                path.write_text(f"{self.boot} {found[1]}\n")
            except OSError as exc:
                log.warning("cannot record process group %d for a later reap: %s", pgid, exc)
        try:
            yield
        finally:
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                log.warning("cannot remove the record of process group %d: %s", pgid, exc)

    def reap(self) -> int:
        """Kill the groups a previous agent left running; how many processes were killed."""
        if not self.dir.is_dir():
            return 0
        killed = 0
        for record in self.dir.iterdir():
            try:
                boot, started = record.read_text().split()
                pgid = int(record.name)
            except (OSError, ValueError):
                boot, started, pgid = "", "0", 0
            if pgid > 1 and boot == self.boot:
                members = self._members(pgid, int(started))
                for pid in members:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)
                killed += len(members)
            record.unlink(missing_ok=True)
        if killed:
            log.warning("killed %d processes a previous agent left running", killed)
        return killed

    @staticmethod
    def _members(pgid: int, started: int) -> list[int]:
        """What is left of the group whose leader (pid `pgid`) started at `started`. A live
        pid `pgid` that started at another time means the id went to someone else: none."""
        leader = _stat(pgid)
        if leader is not None and leader[1] != started:
            return []
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                stat = _stat(int(entry.name))
                if stat is not None and stat[0] == pgid and stat[1] >= started:
                    found.append(int(entry.name))
        return found
