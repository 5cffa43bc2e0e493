"""Podman preflight: what will make a compose run fail on this host, found before one runs.

Each check reads the host through `Host` (commands, files, modules) and returns problems, one
line each naming the fix (a Debian package or a containers.conf setting). `checks()` runs them
all; `Preflight` caches the result for the agent (at start, before compose runs, again after
a failed run or every few minutes) and logs each problem once, not on every heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from agent.groups import guarded

log = logging.getLogger(__name__)

REFRESH_S = 300.0  # a clean or failed result is trusted this long
CONF = "/etc/containers/containers.conf"
CONF_FILES = ("/usr/share/containers/containers.conf", CONF)
CNI_DIRS = ("/usr/local/libexec/cni", "/usr/libexec/cni", "/usr/local/lib/cni", "/usr/lib/cni",
            "/opt/cni/bin")  # fmt: skip
CDI_DIRS = ("/etc/cdi", "/var/run/cdi")
NVIDIA_CDI = "nvidia.com/gpu"
CDI_FIX = "nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml"


# A finding that may not stop compose runs: shown with the others, but no start fails on it.
ADVISORY = "possibly: "


def blocking(problems: Sequence[str]) -> list[str]:
    """The findings a compose run certainly fails on (advisory ones left out)."""
    return [p for p in problems if not p.startswith(ADVISORY)]


class Host(Protocol):
    """What the checks may look at; tests pass a fake one."""

    def which(self, name: str) -> str | None: ...

    def run(self, argv: Sequence[str]) -> tuple[int, str, str]: ...

    def has_module(self, name: str) -> bool: ...

    def read(self, path: str) -> str | None:  # None: no such file (or unreadable)
        ...

    def listdir(self, path: str) -> list[str]: ...  # [] when it does not exist

    def env(self, name: str) -> str | None: ...


@dataclass(frozen=True)
class Setup:
    gpu_runtime: str = "cdi"
    nvidia_gpus: bool = False  # the probe saw NVIDIA GPUs


def conf(host: Host) -> dict[str, Any]:
    """containers.conf as podman reads it: $CONTAINERS_CONF alone, else the system files
    (later files win, section by section)."""
    chosen = host.env("CONTAINERS_CONF")
    merged: dict[str, Any] = {}
    for path in (chosen,) if chosen else CONF_FILES:
        text = host.read(path)
        try:
            found = tomllib.loads(text) if text else {}
        except tomllib.TOMLDecodeError:
            continue  # podman itself says so: `podman info` fails and is reported
        for section, values in found.items():
            if isinstance(values, dict):
                merged.setdefault(section, {}).update(values)
    return merged


def _dirs(settings: Mapping[str, Any], section: str, key: str, default: tuple[str, ...]
          ) -> tuple[str, ...]:  # fmt: skip
    found = settings.get(section, {}).get(key)
    if isinstance(found, list) and all(isinstance(d, str) for d in found):
        return tuple(found)
    return default


def check_tools(host: Host) -> list[str]:
    problems = []
    if host.which("podman") is None:
        problems.append("podman not found on PATH: install Debian's package podman")
    if not host.has_module("podman_compose"):
        problems.append(
            "podman-compose is not installed for the agent's Python: pip install "
            "podman-compose in the agent's environment (it is a gpufleet dependency)"
        )
    return problems


def info_problem(stderr: str, code: int, where: str = CONF) -> str:
    """One line from a failed `podman info`, with the fix when the error is a known one."""
    lines = stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("Error:")] or lines[-1:] or [""]
    error = errors[-1][:300]
    if missing := re.search(r'could not find "([\w-]+)"', error):
        tool = missing.group(1)
        return (f"podman cannot find {tool}, its network backend: install Debian's package "
                f"{tool}, or set helper_binaries_dir in [engine] of {where}")  # fmt: skip
    if runtime := re.search(r'OCI runtime "?([\w-]+)"? not found', error):
        name = runtime.group(1)
        other = "runc" if name == "crun" else "crun"
        return (f"podman's OCI runtime {name} is not installed: install Debian's "
                f"package {name}, or install {other} and set runtime = \"{other}\" in "
                f"[engine] of {where}")  # fmt: skip
    return f"podman info fails ({error or f'exit status {code}'}): podman cannot run containers"


def check_info(host: Host, info: Mapping[str, Any], settings: Mapping[str, Any]) -> list[str]:
    """Network backend and OCI runtime, from `podman info`'s host section."""
    where = host.env("CONTAINERS_CONF") or CONF
    problems = []
    backend = str(info.get("networkBackend", ""))
    if backend == "cni":
        dirs = _dirs(settings, "network", "cni_plugin_dirs", CNI_DIRS)
        if not any("bridge" in host.listdir(d) for d in dirs):
            problems.append(
                f"podman's network backend is CNI but no CNI bridge plugin is installed (looked "
                f"in {', '.join(dirs)}): install Debian's package containernetworking-plugins, "
                f'or netavark with network_backend = "netavark" in [network] of {where}'
            )
    runtime = info.get("ociRuntime") or {}
    name, path = str(runtime.get("name", "")), str(runtime.get("path", ""))
    if name and not path:
        problems.append(f"podman's OCI runtime {name} is not installed: install Debian's "
                        f"package {name}")  # fmt: skip
    if name == "crun" and str(info.get("cgroupVersion", "")) == "v1":
        # crun runs on many v1 hosts and fails on some (hybrid layouts): say it, do not block.
        problems.append(
            f"{ADVISORY}podman's OCI runtime crun may fail on this host's cgroups v1 layout: "
            f"if containers do not start, install Debian's package runc and set runtime = "
            f'"runc" in [engine] of {where} (or boot with cgroups v2: '
            f"systemd.unified_cgroup_hierarchy=1)"
        )
    return problems


def check_cdi(host: Host, setup: Setup, settings: Mapping[str, Any]) -> list[str]:
    if setup.gpu_runtime != "cdi" or not setup.nvidia_gpus:
        return []
    dirs = _dirs(settings, "engine", "cdi_spec_dirs", CDI_DIRS)
    for folder in dirs:
        for name in host.listdir(folder):
            spec = name.endswith((".yaml", ".yml", ".json"))
            if spec and NVIDIA_CDI in (host.read(f"{folder}/{name}") or ""):
                return []
    return [
        f"no NVIDIA CDI spec (looked in {', '.join(dirs)}) and --gpu-runtime cdi: containers "
        f"cannot get GPUs; generate it: {CDI_FIX} (from Debian's nvidia-container-toolkit)"
    ]


def checks(host: Host, setup: Setup) -> list[str]:
    """Every problem found, one line each with its fix; [] when compose runs should work."""
    problems = check_tools(host)
    if host.which("podman") is None:
        return problems
    settings = conf(host)
    code, out, err = host.run(["podman", "info", "--format", "json"])
    if code != 0:
        problems.append(info_problem(err, code, host.env("CONTAINERS_CONF") or CONF))
    else:
        try:
            info = json.loads(out).get("host", {})
        except (ValueError, AttributeError):
            info = {}
        problems += check_info(host, info if isinstance(info, dict) else {}, settings)
    return problems + check_cdi(host, setup, settings)


class Preflight:
    """The cached preflight of this agent: checks again when the result is older than
    REFRESH_S or after `stale()` (a compose run failed), one run at a time; new problems are
    logged once. `problems()` waits for a due check (before a compose run); `current(wait)`
    waits at most `wait` seconds and otherwise answers the last result (hellos and heartbeats
    must not wait on a hung podman)."""

    def __init__(self, run: Callable[[], list[str]], refresh_s: float = REFRESH_S,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.run = run
        self.refresh_s = refresh_s
        self.clock = clock
        self.found: tuple[str, ...] = ()
        self._at: float | None = None
        self._running: asyncio.Task[None] | None = None
        self._generation = 0  # bumped by stale(): a check begun before it does not count

    def stale(self) -> None:
        self._at = None
        self._generation += 1

    def _due(self) -> bool:
        return self._at is None or self.clock() - self._at >= self.refresh_s

    def _refresh(self) -> asyncio.Task[None]:
        if self._running is None or self._running.done():
            self._running = asyncio.create_task(self._check(), name="preflight")
        return self._running

    async def problems(self) -> tuple[str, ...]:
        if self._due():
            await asyncio.shield(self._refresh())
        return self.found

    async def current(self, wait: float) -> tuple[str, ...]:
        if self._due():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._refresh()), wait)
        return self.found

    async def _check(self) -> None:
        generation = self._generation
        try:
            found = tuple(await asyncio.to_thread(self.run))
        except Exception as exc:  # a check's bug must not stop the agent
            log.exception("podman preflight failed")
            found = (f"podman preflight failed: {exc!r}",)
        if generation == self._generation:  # else a failure since makes it due again
            self._at = self.clock()
        self._log(found)

    def _log(self, found: tuple[str, ...]) -> None:
        for line in found:
            if line not in self.found:
                log.warning("preflight: %s", line)
        if self.found and not found:
            log.info("preflight: the podman problems reported before are gone")
        self.found = found


@dataclass(frozen=True)
class SystemHost:
    """The real host, as the agent's podman runs see it (its environment: PATH,
    CONTAINERS_CONF)."""

    environ: Mapping[str, str]
    timeout_s: float = 15.0

    def which(self, name: str) -> str | None:
        return shutil.which(name, path=self.environ.get("PATH", os.defpath))

    def run(self, argv: Sequence[str]) -> tuple[int, str, str]:
        """In its own process group under the guard (agent/groups.py): a hung podman is killed
        on timeout, and with the agent however it dies."""
        try:
            process = subprocess.Popen(
                guarded(list(argv)), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True, env=dict(self.environ),
                start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            return 127, "", f"Error: {argv[0]}: {exc.strerror}"
        try:
            out, err = process.communicate(timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            # A descendant in another session may hold the pipes: do not wait for it forever.
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.communicate(timeout=2)
            for pipe in (process.stdout, process.stderr):
                if pipe is not None:
                    pipe.close()
            return 124, "", f"Error: {' '.join(argv[:2])} took more than {self.timeout_s:g} s"
        return process.returncode, out, err

    def has_module(self, name: str) -> bool:
        return importlib.util.find_spec(name) is not None

    def read(self, path: str) -> str | None:
        try:
            return Path(path).read_text(errors="replace")
        except OSError:
            return None

    def listdir(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(path))
        except OSError:
            return []

    def env(self, name: str) -> str | None:
        return self.environ.get(name) or None


def for_host(environ: Mapping[str, str], setup: Callable[[], Setup]) -> Preflight:
    """The agent's preflight: the real host, the setup as the probe sees it at each run."""
    host = SystemHost(environ)
    return Preflight(lambda: checks(host, setup()))
