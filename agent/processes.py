"""Host process projects: one supervised process instead of a compose project (a llama.cpp
model server run from a llama-cpp-python environment on the host).

Each lives in STATE_DIR/projects/NAME/, the directory a compose project of that name would
have (a name is one project, whichever kind):
  process.json  the spec's canonical text (gpufleet.process); its sha256 is the digest
  supervisor    who supervises it: pid, start time (clock ticks since boot, /proc/PID/stat)
                and boot id, so a pid the kernel gave to another process is never taken for it
  server.pid, exit, server.log[.N]   written by the supervisor (agent/supervise.py)

The supervisor runs in its own session, detached from the agent: it survives the agent's exit
and restart, and the next agent adopts it by reading its record (nothing is restarted). Stop:
SIGTERM to the supervisor, which forwards it to the server; after the grace period SIGKILL to
whatever is left of its session.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from agent import logtail, supervise
from agent.compose import Container
from agent.launcher import Launcher, LaunchError
from agent.projects import COMPOSE_FILE, DIGEST_FILE, check_name
from gpufleet.process import ProcessSpec, ProcessSpecError, from_text

SPEC_FILE = "process.json"
RECORD_FILE = "supervisor"
GRACE_S = 15.0
KILL_WAIT_S = 5.0
SERVER_WAIT_S = 5.0  # for the supervisor to start the server
POLL_S = 0.1


class ProcessError(Exception):
    """A host process could not be started or stopped; the message is one line."""


@dataclass(frozen=True)
class Identity:
    """A started supervisor, as /proc shows it."""

    pid: int
    start: int  # clock ticks since boot
    boot: str

    def line(self) -> str:
        return f"{self.pid} {self.start} {self.boot}\n"


@dataclass(frozen=True)
class Stat:
    state: str  # R, S, D, Z, ...
    session: int
    start: int


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def read_stat(pid: int, proc: Path = Path("/proc")) -> Stat | None:
    try:
        text = (proc / str(pid) / "stat").read_text()
    except (OSError, ValueError):
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the name may hold spaces and ')'
    return Stat(fields[0], int(fields[3]), int(fields[19]))


@dataclass(frozen=True)
class State:
    """A process project as it runs now."""

    name: str
    service: str
    digest: str  # of the spec it runs; "" when it was never started or was stopped
    pid: int = 0  # the server's pid where known, else the supervisor's; 0: not started
    alive: bool = False
    exit_status: int | None = None  # what the supervisor recorded when the server exited

    def describe(self) -> str:
        if self.alive:
            return f"runs as pid {self.pid}"
        if self.exit_status is None:
            return "exited (no exit status recorded)"
        if self.exit_status == supervise.NOT_STARTED:
            return "could not be started (see its log)"
        if self.exit_status < 0:
            return f"exited (killed by signal {-self.exit_status})"
        return f"exited (exit status {self.exit_status})"


async def exit_of(pid: int, within: float) -> None:
    """Back when process `pid` exits or `within` seconds pass (a pidfd: no polling); at once
    where the kernel has no pidfd (Linux before 5.3), and the caller polls."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        return
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not ended.done():
            ended.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await asyncio.wait_for(ended, within)
    except TimeoutError:
        pass
    finally:
        loop.remove_reader(fd)
        os.close(fd)


class Processes:
    def __init__(self, state_dir: Path, grace_s: float = GRACE_S,
                 rotate_bytes: int = supervise.ROTATE_BYTES, keep: int = supervise.KEEP,
                 proc: Path = Path("/proc"), standby: bool = True,
                 variables: Mapping[str, str] | None = None) -> None:  # fmt: skip
        self.root = (state_dir / "projects").resolve()
        # What a spec's arguments and environment may name as ${NAME}, the agent's own
        # variables alone (GPUFLEET_MODEL_CACHE): the hub sends one spec for every node.
        self.variables = dict(variables or {})
        self.grace_s = grace_s
        self.rotate_bytes = rotate_bytes
        self.keep = keep
        self.proc = proc
        self.boot = boot_id()
        self._children: dict[int, subprocess.Popen[bytes]] = {}  # started here: reaped here
        self.launcher = Launcher(Path("/"), standby)

    # -- what is stored -------------------------------------------------------------------

    def directory(self, name: str) -> Path:
        return self.root / check_name(name)

    def expand_text(self, text: str) -> str:
        """${NAME} of the agent's own variables replaced; anything else stays as written."""
        for name, value in self.variables.items():
            text = text.replace("${" + name + "}", value)
        return text

    def is_process(self, name: str) -> bool:
        return (self.directory(name) / SPEC_FILE).is_file()

    def known(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(e.name for e in self.root.iterdir() if (e / SPEC_FILE).is_file())

    def spec(self, name: str) -> ProcessSpec | None:
        try:
            return from_text((self.directory(name) / SPEC_FILE).read_text())
        except (OSError, UnicodeDecodeError, ProcessSpecError):
            return None

    def _record(self, name: str) -> Identity | None:
        try:
            pid, start, boot = (self.directory(name) / RECORD_FILE).read_text().split()
            return Identity(int(pid), int(start), boot)
        except (OSError, ValueError):
            return None

    def _number(self, name: str, file: str) -> int | None:
        try:
            return int((self.directory(name) / file).read_text())
        except (OSError, ValueError):
            return None

    # -- what runs ----------------------------------------------------------------------

    def _alive(self, ident: Identity) -> bool:
        child = self._children.get(ident.pid)
        if child is not None and child.poll() is not None:
            del self._children[ident.pid]  # reaped: no zombie left behind
        found = read_stat(ident.pid, self.proc)
        return (
            ident.boot == self.boot
            and found is not None
            and found.start == ident.start
            and found.state not in ("Z", "X")
        )

    def state(self, name: str) -> State:
        spec_file = self.directory(name) / SPEC_FILE
        spec = self.spec(name)
        service = spec.service if spec is not None else "server"
        ident = self._record(name)
        if ident is None:
            return State(name, service, "")
        try:
            digest = hashlib.sha256(spec_file.read_bytes()).hexdigest()
        except OSError:
            digest = ""
        alive = self._alive(ident)
        pid = self._number(name, supervise.SERVER_FILE) or ident.pid
        status = None if alive else self._number(name, supervise.EXIT_FILE)
        return State(name, service, digest, pid, alive, status)

    def listing(self, name: str) -> tuple[str, tuple[Container, ...]]:
        """(digest, containers) as tasks and the monitor see a project: one service, container
        id `pid N`, state running or exited; nothing when it was never started or stopped."""
        found = self.state(name)
        if not found.pid:
            return "", ()
        state = "running" if found.alive else "exited"
        return found.digest, (Container(found.service, f"pid {found.pid}", state),)

    def sessions(self) -> frozenset[int]:
        """The sessions of the running supervisors: their servers and every child of them."""
        found = set()
        for name in self.known():
            ident = self._record(name)
            if ident is not None and self._alive(ident):
                found.add(ident.pid)
        return frozenset(found)

    def _members(self, ident: Identity) -> list[int]:
        """What is left of the supervisor's session (zombies are gone already)."""
        if ident.boot != self.boot:
            return []
        leader = read_stat(ident.pid, self.proc)
        if leader is not None and leader.start != ident.start:
            return []  # the pid went to another process: its session is not ours
        found = []
        for entry in self.proc.iterdir():
            if entry.name.isdigit():
                stat = read_stat(int(entry.name), self.proc)
                if (
                    stat is not None
                    and stat.session == ident.pid
                    and stat.start >= ident.start
                    and stat.state not in ("Z", "X")
                ):
                    found.append(int(entry.name))
        return found

    # -- start and stop -----------------------------------------------------------------

    async def start(self, name: str, spec: ProcessSpec, python: Path,
                    env: Mapping[str, str]) -> State:  # fmt: skip
        """Write the spec and start its supervisor (the caller stopped what ran before); back
        once the supervisor started the server (or failed to), so the pid reported is the
        server's from the first report on."""
        if not os.access(python, os.X_OK):
            raise ProcessError(f"cannot start {name}: {python} is missing or not executable")
        directory = self.directory(name)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        running = self._record(name)
        if running is not None and self._alive(running):  # two overlapping starts: never two
            raise ProcessError(f"cannot start {name}: it already runs (supervisor pid "
                               f"{running.pid}); stop it first")  # fmt: skip
        for stale in (COMPOSE_FILE, DIGEST_FILE, RECORD_FILE, supervise.SERVER_FILE,
                      supervise.EXIT_FILE):  # fmt: skip
            (directory / stale).unlink(missing_ok=True)
        supervise.write_atomically(directory / SPEC_FILE, spec.text())
        try:
            child = self.launcher.launch(
                directory,
                [str(python), *(self.expand_text(arg) for arg in spec.args)],
                {**env, **{k: self.expand_text(v) for k, v in spec.env}},
                self.rotate_bytes,
                self.keep,
            )
        except LaunchError as exc:
            raise ProcessError(f"cannot start {name}: {exc}") from None
        self._children[child.pid] = child
        found = read_stat(child.pid, self.proc)  # a zombie at worst: it is our child
        ident = Identity(child.pid, found.start if found else 0, self.boot)
        try:
            supervise.write_atomically(directory / RECORD_FILE, ident.line())
        except OSError as exc:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            self._children.pop(child.pid, None)
            raise ProcessError(
                f"cannot record {name} in {directory}: {exc.strerror or exc}"
            ) from None
        deadline = time.monotonic() + SERVER_WAIT_S
        while not (directory / supervise.SERVER_FILE).is_file() and self._alive(ident):
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.01)
        return self.state(name)

    async def stop(self, name: str) -> State:
        """SIGTERM, the grace period, SIGKILL; the project then runs nothing (its spec and log
        stay). ProcessError when something of it survives even SIGKILL."""
        ident = self._record(name)
        before = self.state(name)
        if ident is None:
            return before
        # The supervisor forwards SIGTERM to the server; without it, the server gets it.
        alive = self._alive(ident)
        for pid in [ident.pid] if alive else self._members(ident):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGTERM)
        if not await self._gone(ident, self.grace_s):
            for pid in self._members(ident):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            if not await self._gone(ident, KILL_WAIT_S):
                left = ", ".join(str(pid) for pid in self._members(ident))
                raise ProcessError(f"cannot stop {name}: pid {left} still runs after SIGKILL")
        directory = self.directory(name)
        for done in (RECORD_FILE, supervise.SERVER_FILE, supervise.EXIT_FILE):
            (directory / done).unlink(missing_ok=True)
        return before

    async def _gone(self, ident: Identity, within: float) -> bool:
        deadline = time.monotonic() + within
        if self._alive(ident):  # the supervisor outlives its server: its exit is the sign
            await exit_of(ident.pid, within)
        pause = 0.01  # what is left of its session (rare): look often at first
        while True:
            self._alive(ident)  # reaps the supervisor if this agent started it
            if not self._members(ident):
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(pause)
            pause = min(POLL_S, pause * 1.5)

    def forget(self, name: str) -> None:
        """No longer a process project (a compose project takes the name): the spec goes."""
        (self.directory(name) / SPEC_FILE).unlink(missing_ok=True)
        (self.directory(name) / RECORD_FILE).unlink(missing_ok=True)

    # -- logs -----------------------------------------------------------------------------

    def tail(self, name: str, lines: int, max_bytes: int = logtail.MAX_BYTES) -> list[str]:
        log = self.directory(name) / supervise.LOG_FILE
        files = [log, *(log.with_name(f"{log.name}.{i}") for i in range(1, self.keep + 1))]
        return logtail.tail_files(files, lines, max_bytes)
