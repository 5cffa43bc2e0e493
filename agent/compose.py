"""Compose projects through Podman: podman-compose for up/down, podman for ps and logs.

Why podman-compose rather than the Podman REST API: it reads the compose file as operators
write it (deploy.resources.reservations.devices becomes --device nvidia.com/gpu=N under CDI)
and needs no long-running podman service on the host. Subprocesses run through an injected
runner, so tests can also drive this module with a scripted runner.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from agent.groups import Ledger, guarded
from agent.projects import OVERRIDE_FILE
from agent.rootcause import root_cause

PROJECT_LABEL = "io.podman.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
COMPOSE_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class Completed:
    code: int
    stdout: str
    stderr: str

    def tail(self) -> str:
        """Why it failed, in one line: the failing podman command and its error line (never
        a traceback's tail; agent/rootcause.py)."""
        return root_cause(self.stderr, self.stdout, self.code)


Runner = Callable[[list[str], Mapping[str, str], float], Awaitable[Completed]]


async def run_process(
    argv: list[str], env: Mapping[str, str], limit_s: float, ledger: Ledger | None = None
) -> Completed:
    """Run a command in its own process group; on timeout or cancellation the whole group
    is killed, so podman processes that podman-compose started cannot outlive the task, and
    the group dies with the agent too (agent/groups.py). `ledger` records the running group
    so that the next agent can reap it if that ever fails."""
    if shutil.which(argv[0], path=env.get("PATH", os.defpath)) is None:
        return Completed(127, "", f"{argv[0]} not found: install Debian's package {argv[0]}")
    process = await asyncio.create_subprocess_exec(
        *guarded(argv), env=dict(env), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    with ledger.recorded(process.pid) if ledger is not None else contextlib.nullcontext():
        try:
            out, err = await asyncio.wait_for(process.communicate(), limit_s)
        except (TimeoutError, asyncio.CancelledError):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
            raise
    return Completed(process.returncode or 0, out.decode(errors="replace"),
                     err.decode(errors="replace"))  # fmt: skip


@dataclass(frozen=True)
class Container:
    service: str
    container_id: str
    state: str


def compose_name(node: str, project: str) -> str:
    """Podman project name, unique per (node, project) so several agents can share a host.

    Readable (`gf-<node>-<project>-`, lower case, other characters as '-') and injective: a
    hash of the exact pair ends it, so names that differ only by case, '.' or '-', or split
    differently between node and project, never share containers."""
    digest = hashlib.sha256(f"{node}\0{project}".encode()).hexdigest()[:12]
    return f"gf-{_slug(node)}-{_slug(project)}-{digest}"


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9_-]", "-", name.lower())


class Podman:
    def __init__(
        self,
        node: str,
        env: Mapping[str, str] | None = None,
        run: Runner = run_process,
        compose: tuple[str, ...] = (sys.executable, "-m", "podman_compose"),
        podman: str = "podman",
    ) -> None:
        self.node = node
        self.env = {**os.environ, **(env or {})}
        self.run = run
        self.compose = compose
        self.podman = podman

    async def _compose(self, project: str, file: Path, *args: str) -> Completed:
        """Compose with the project's file, plus its GPU override when it has one."""
        override = file.parent / OVERRIDE_FILE
        files = ["-f", str(file)] + (["-f", str(override)] if override.is_file() else [])
        # --verbose: podman-compose logs each podman command, so a failure names its command.
        name = compose_name(self.node, project)
        argv = [*self.compose, "--verbose", "-p", name, *files, *args]
        return await self.run(argv, self.env, COMPOSE_TIMEOUT_S)

    async def up(self, project: str, file: Path) -> Completed:
        return await self._compose(project, file, "up", "-d")

    async def recreate(self, project: str, file: Path, service: str) -> Completed:
        """Recreate one service alone (its dependencies stay as they are)."""
        return await self._compose(project, file, "up", "-d", "--force-recreate", "--no-deps",
                                   service)  # fmt: skip

    async def remove(self, container_id: str) -> Completed:
        return await self.run([self.podman, "rm", "-f", "-t", "0", container_id], self.env, 60.0)

    async def down(self, project: str, file: Path) -> Completed:
        return await self._compose(project, file, "down")

    async def clean(self, project: str, file: Path) -> list[str]:
        """After a failed up: compose down, then remove what down left of the project (its
        pod, its networks and with them their CNI/netavark files). What is still left."""
        name = compose_name(self.node, project)
        await self.down(project, file)
        left = []
        for kind, listing in (("pod", "ps"), ("network", "ls")):
            argv = [self.podman, kind, listing, "--format", "{{.Name}}",
                    "--filter", f"label={PROJECT_LABEL}={name}"]  # fmt: skip
            if kind == "pod":  # podman-compose labels no pod: it names it pod_<project>
                argv[-2:] = ["--filter", f"name=^pod_{name}$"]
            found = await self.run(argv, self.env, 60.0)
            for item in found.stdout.split() if found.code == 0 else []:
                gone = await self.run([self.podman, kind, "rm", "-f", item], self.env, 60.0)
                if gone.code != 0:
                    left.append(f"{kind} {item}: {gone.tail()}")
        return left

    async def containers(self, project: str) -> list[Container]:
        label = f"label={PROJECT_LABEL}={compose_name(self.node, project)}"
        argv = [self.podman, "ps", "-a", "--format", "json", "--filter", label]
        done = await self.run(argv, self.env, 60.0)
        if done.code != 0:
            raise RuntimeError(f"podman ps failed: {done.tail()}")
        found = [
            Container(
                (entry.get("Labels") or {}).get(SERVICE_LABEL, ""),
                entry.get("Id", ""),
                str(entry.get("State", "")).lower(),
            )
            for entry in json.loads(done.stdout or "[]")
        ]
        return sorted(found, key=lambda c: c.service)

    async def logs(self, container_id: str, lines: int = 20) -> str:
        argv = [self.podman, "logs", "--tail", str(lines), container_id]
        done = await self.run(argv, self.env, 60.0)
        return (done.stdout + done.stderr).strip()
