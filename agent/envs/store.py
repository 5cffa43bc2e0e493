"""The environments of this node: STATE_DIR/envs/<backend>-<version>/ is a venv that also holds
env.json (its EnvRecord, written atomically) and build.log (the whole build's output, kept
after a failure). Which environment a host process project runs from is resolved here.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path

from agent.envs.commands import SESSION_FILE, kill_recorded
from agent.envs.record import (
    BUILDING,
    FAILED,
    READY,
    EnvRecord,
    check_backend,
    split_name,
)
from agent.processes import Processes
from gpufleet.envkey import version_order

log = logging.getLogger(__name__)

RECORD_FILE = "env.json"
LOG_FILE = "build.log"
KEEP = (RECORD_FILE, LOG_FILE)  # what a failed build leaves behind
TRASH = ".removing-"  # an environment being deleted (not a BACKEND-VERSION name: never listed)


class EnvError(Exception):
    """An environment cannot be used or changed; the message is one line."""


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def dir_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


class EnvStore:
    def __init__(self, state_dir: Path) -> None:
        self.root = (state_dir / "envs").absolute()
        # Names a build task of this agent works on now.
        self.active: set[str] = set()

    def directory(self, name: str) -> Path:
        split_name(name)
        return self.root / name

    def python(self, name: str) -> Path:
        return self.directory(name) / "bin" / "python"

    def log_file(self, name: str) -> Path:
        return self.directory(name) / LOG_FILE

    def read(self, name: str) -> EnvRecord | None:
        try:
            return EnvRecord.from_json((self.directory(name) / RECORD_FILE).read_text())
        except (OSError, ValueError) as exc:
            if not isinstance(exc, FileNotFoundError):
                log.warning("environment %s: unreadable %s: %s", name, RECORD_FILE, exc)
            return None

    def write(self, record: EnvRecord) -> EnvRecord:
        directory = self.directory(record.name)
        directory.mkdir(parents=True, exist_ok=True)
        _write_atomically(directory / RECORD_FILE, record.to_json())
        return record

    def records(self) -> list[EnvRecord]:
        if not self.root.is_dir():
            return []
        found = []
        for entry in sorted(self.root.iterdir()):
            try:
                split_name(entry.name)
            except ValueError:
                continue
            record = self.read(entry.name)
            if record is not None:
                found.append(record)
        return found

    def clear(self, name: str) -> None:
        """Remove a partial venv, keeping env.json and build.log."""
        directory = self.directory(name)
        if not directory.is_dir():
            return
        for entry in directory.iterdir():
            if entry.name in KEEP:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)

    async def discard(self, name: str) -> None:
        """Remove an environment without holding up the event loop: it is renamed away at once
        (gone from `records`), then deleted in a thread (a venv holds thousands of files: about
        1.5 s for a CPU one); a rename left behind by a crash goes at the next `recover`."""
        directory = self.directory(name)
        if not directory.exists():
            return
        trash = self.root / f"{TRASH}{name}-{uuid.uuid4().hex[:12]}"
        directory.rename(trash)
        await asyncio.to_thread(shutil.rmtree, trash, True)

    def recover(self) -> list[str]:
        """At start-up: a build an earlier agent left in state building has no builder any more
        (this agent holds the state dir's lock): it failed, and its partial venv goes."""
        for trash in self.root.glob(f"{TRASH}*") if self.root.is_dir() else ():
            shutil.rmtree(trash, ignore_errors=True)
        found = []
        for record in self.records():
            if record.state == BUILDING and record.name not in self.active:
                # The unit's KillMode=process leaves the build running: stop it first.
                killed = kill_recorded(self.directory(record.name) / SESSION_FILE)
                if killed:
                    log.warning("environment %s: killed %d processes its unfinished build "
                                "left", record.name, killed)  # fmt: skip
                self.clear(record.name)
                self.write(record.with_(state=FAILED, message="the agent restarted during the "
                                        "build; build it again"))  # fmt: skip
                log.warning("environment %s: the agent restarted during its build: marked failed",
                            record.name)  # fmt: skip
                found.append(record.name)
        return found

    # -- use by host process projects ---------------------------------------------------

    def newest_ready(self, backend: str) -> EnvRecord | None:
        ready = [r for r in self.records() if r.backend == backend and r.state == READY]
        ready.sort(key=lambda r: (version_order(r.version), r.built_at))
        return ready[-1] if ready else None

    def resolve(self, environment: str, explicit: Mapping[str, Path], node: str = "N") -> Path:
        """The directory a process of `environment` (a backend, or an environment name) runs
        from: --llama-env BACKEND=DIR wins for a backend, else the newest ready environment of
        that backend; a named environment must be ready. EnvError (one line) when none."""
        if "-" in environment:
            try:
                split_name(environment)
            except ValueError as exc:
                raise EnvError(str(exc)) from None
            record = self.read(environment)
            if record is None:
                raise EnvError(f"no llama-cpp-python environment {environment} on this node: "
                               f"build it with `hubctl envs build --backend "
                               f"{record_backend(environment)} --version "
                               f"{environment.partition('-')[2]} --node {node}`")  # fmt: skip
            if record.state != READY:
                why = f": {record.message}" if record.message else ""
                raise EnvError(f"llama-cpp-python environment {environment} is {record.state}"
                               f"{why}")  # fmt: skip
            return self.directory(environment)
        try:
            check_backend(environment)
        except ValueError as exc:
            raise EnvError(str(exc)) from None
        if environment in explicit:
            return explicit[environment]
        newest = self.newest_ready(environment)
        if newest is None:
            raise EnvError(
                f"no llama-cpp-python environment for backend {environment} on this node: "
                f"build one with `hubctl envs build --backend {environment} --node {node}`, "
                f"or start the agent with --llama-env {environment}=DIR"
            )
        return self.directory(newest.name)

    def users(self, name: str, processes: Processes) -> list[str]:
        """The running host process projects whose server runs from environment `name`."""
        return self.in_use(processes).get(name, [])

    def in_use(self, processes: Processes) -> dict[str, list[str]]:
        """Environment name -> the running host process projects whose server runs from it
        (by the interpreter each was started with: STATE_DIR/envs/NAME/bin/python)."""
        root = str(self.root) + os.sep
        found: dict[str, list[str]] = {}
        for project in processes.known():
            state = processes.state(project)
            if not state.alive:
                continue
            for arg in _argv0(state.pid):
                if arg.startswith(root):
                    found.setdefault(arg[len(root) :].partition(os.sep)[0], []).append(project)
        return found


def _argv0(pid: int) -> Iterable[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ()
    return [raw.split(b"\0")[0].decode(errors="replace")]


def record_backend(name: str) -> str:
    return name.partition("-")[0]
