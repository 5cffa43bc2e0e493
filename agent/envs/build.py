"""Building an environment: preflight, venv, then the key's wheel from the cluster cache or a
compile (fetch, configure, compile), install, verify, upload (a compiled wheel that passed the
verification gate: a broken one never reaches the cluster cache).

Nothing is created before preflight passes. From the venv on, env.json says `building` and
every subprocess's output goes to build.log. A failure or a cancel ends with the environment
`failed` (the phase and the log's last lines), its partial venv removed and build.log kept; a
wheel that fails the verification gate leaves it `broken`. A failed upload to the cache is a
warning, not a failed build.
"""

from __future__ import annotations

import asyncio
import os
import platform
import shutil
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from agent import logtail
from agent.envs import flags, preflight
from agent.envs.commands import SESSION_FILE, run_logged
from agent.envs.record import (
    CACHE,
    COMPILED,
    FAILED,
    READY,
    EnvRecord,
    WheelInfo,
    env_name,
    new_record,
)
from agent.envs.store import EnvStore, dir_size
from agent.envs.verify import verify
from agent.envs.wheels import WheelCache, WheelError, sha256_of
from agent.probes import GpuInfo
from gpufleet import envkey

PACKAGE = "llama-cpp-python"
WORK_DIR = ".build"  # inside the environment's directory: removed with a partial venv
TAIL_LINES = 12
Progress = Callable[[str, str, float | None], None]


@dataclass(frozen=True)
class BuildSpec:
    backend: str
    version: str
    extra_targets: tuple[str, ...] = ()
    no_cache: bool = False

    @property
    def name(self) -> str:
        return env_name(self.backend, self.version)


@dataclass(frozen=True)
class Built:
    """What a build did: `changed` False when a ready environment was there already."""

    record: EnvRecord
    ok: bool
    changed: bool
    message: str
    compiled: bool = False
    phases: tuple[str, ...] = ()


class BuildFailed(Exception):
    """A build step failed; one line (the phase is the builder's current one)."""


def python_tag(version: tuple[int, ...] = tuple(sys.version_info[:2])) -> str:
    return f"cp{version[0]}{version[1]}"


def libc() -> str:
    name, version = platform.libc_ver()
    return f"{name} {version}".strip() or "unknown"


class Builder:
    def __init__(self, store: EnvStore, host: preflight.Host, wheels: WheelCache,
                 gpus: Callable[[], Awaitable[Sequence[GpuInfo]]], env: Mapping[str, str],
                 node: str, python: str = sys.executable) -> None:  # fmt: skip
        self.store = store
        self.host = host
        self.wheels = wheels
        self.gpus = gpus
        self.env = dict(env)
        self.node = node
        self.python = python  # the interpreter every venv is made from

    async def check(self, spec: BuildSpec) -> preflight.Checked:
        return await preflight.check(self.host, spec.backend, self.store.root, await self.gpus(),
                                     spec.extra_targets)  # fmt: skip

    async def build(self, spec: BuildSpec, progress: Progress, check: bool = False) -> Built:
        name = spec.name
        before = self.store.read(name)
        if name in self.store.active:
            record = before or new_record(spec.backend, spec.version)
            return Built(record, False, False, f"{name} is being built by another task already")
        if before is not None and before.state == READY:
            return Built(before, True, False, f"{name} is ready already, nothing done")
        progress("preflight", f"checking what a {spec.backend} build needs", None)
        checked = await self.check(spec)
        if checked.problems:
            record = new_record(spec.backend, spec.version).with_(
                state=FAILED, message="; ".join(checked.problems))  # fmt: skip
            return Built(record, False, False, f"cannot build {name}: " + record.message,
                         phases=("preflight",))  # fmt: skip
        toolchain = checked.toolchain
        parts = envkey.parts(spec.version, spec.backend, toolchain.toolkit, toolchain.targets,
                             platform.machine(), libc(), python_tag())  # fmt: skip
        key = envkey.key(parts)
        if check:
            record = before or new_record(spec.backend, spec.version)
            return Built(record, True, True, f"would build {name} ({envkey.describe(parts)})")
        self.store.active.add(name)
        try:
            return await self._build(spec, toolchain, parts, key, progress)
        finally:
            self.store.active.discard(name)

    async def _build(self, spec: BuildSpec, toolchain: preflight.Toolchain,
                     parts: Mapping[str, str], key: str, progress: Progress) -> Built:  # fmt: skip
        name, store = spec.name, self.store
        await store.discard(name)  # a failed or broken one before: start afresh
        directory = store.directory(name)
        directory.mkdir(parents=True)
        log_file = store.log_file(name)
        work = directory / WORK_DIR
        record = store.write(new_record(spec.backend, spec.version).with_(key=key))
        phases: list[str] = ["preflight"]
        current = [""]

        written = [-1]  # the compile's tenth of the way env.json said last

        def phase(which: str, message: str, percent: float | None = None) -> None:
            # env.json (and so the heartbeats' EnvInfo) says what it does: at each phase, and
            # every tenth of a compile.
            tenth = int(percent // 10) if percent is not None else -1
            if which != current[0] or tenth > written[0]:
                current[0] = which
                written[0] = tenth
                store.write(record.with_(message=f"{which}: {message}"))
            if which not in phases:
                phases.append(which)
            progress(which, message, percent)

        env = {**self.env, "TMPDIR": str(work / "tmp"), "PIP_DISABLE_PIP_VERSION_CHECK": "1",
               **toolchain.env}  # fmt: skip
        python = str(directory / "bin" / "python")
        pip = [python, "-m", "pip"]
        compiled, warnings = False, []
        try:
            (work / "tmp").mkdir(parents=True)
            phase("venv", f"creating the venv {directory}")
            await self._run([self.python, "-m", "venv", str(directory)], log_file, env)
            wheel = None
            if not spec.no_cache:
                phase("cache", f"asking the cluster cache for {envkey.describe(parts)}")
                try:
                    wheel = await self.wheels.download(key, _fresh(work / "cache"))
                except WheelError as exc:
                    warnings.append(str(exc))
                phase("cache", f"installing {wheel.name} from the cluster cache" if wheel
                      else "not in the cluster cache: compiling")  # fmt: skip
            if wheel is None:
                wheel = await self._compile(spec, toolchain, pip, work, log_file, env, phase)
                compiled = True
            phase("install", f"installing {wheel.name}[server]")
            await self._run([*pip, "install", "--no-cache-dir", f"{wheel}[server]"],
                            log_file, env)  # fmt: skip
            phase("verify", "loading a tiny model with every layer offloaded")
            found, log = await verify(Path(python), spec.backend, directory, self.env)
            with open(log_file, "a") as file:  # noqa: ASYNC230 (a local file, once)
                file.write(f"$ verification\n{log}\n")
            if compiled and found.state == READY:  # a wheel that failed the gate stays here
                phase("upload", f"uploading {wheel.name} to the cluster cache")
                try:
                    await self.wheels.upload(wheel, WheelInfo(
                        key, wheel.name, wheel.stat().st_size, sha256_of(wheel), dict(parts),
                        self.node, time.time()))  # fmt: skip
                except WheelError as exc:
                    warnings.append(str(exc))
            await asyncio.to_thread(shutil.rmtree, work, True)  # the compile's tree: big
        except asyncio.CancelledError:
            store.clear(name)
            store.write(record.with_(state=FAILED, message=f"cancelled during {current[0]}"))
            raise
        except BuildFailed as exc:
            await asyncio.to_thread(store.clear, name)
            tail = logtail.tail_files([log_file], TAIL_LINES)
            failed = store.write(record.with_(state=FAILED, message=f"{current[0]} failed: {exc}"))
            message = f"{current[0]} failed: {exc}\n" + "\n".join(tail)
            return Built(failed, False, True, message, compiled, tuple(phases))
        done = record.with_(
            state=found.state, message=found.message, gpu_offload=found.gpu_offload,
            devices=found.devices, system_info=found.system_info, built_at=time.time(),
            origin=COMPILED if compiled else CACHE, size_bytes=dir_size(directory),
        )  # fmt: skip
        store.write(done)
        how = "compiled" if compiled else "installed from the cluster cache"
        if found.state != READY:
            how += " but broken (never used for a model)"
        message = f"{name} {how}: {found.message}"
        if warnings:
            message += "; warning: " + "; ".join(warnings)
        return Built(done, found.state == READY, True, message, compiled, tuple(phases))

    async def _compile(self, spec: BuildSpec, toolchain: preflight.Toolchain, pip: list[str],
                       work: Path, log_file: Path, env: dict[str, str],
                       phase: Progress) -> Path:  # fmt: skip
        phase("fetch", f"downloading the {PACKAGE} {spec.version} source", None)
        source = _fresh(work / "source")
        await self._run([*pip, "download", "--no-deps", "--no-binary", ":all:",
                                  "--no-cache-dir", f"{PACKAGE}=={spec.version}", "-d",
                                  str(source)], log_file, env)  # fmt: skip
        sdists = sorted(source.glob("*.tar.gz"))
        if not sdists:
            raise BuildFailed(f"pip downloaded no {PACKAGE} {spec.version} source")
        cmake = flags.cmake_args(spec.backend, toolchain.targets)
        phase("configure", f"CMAKE_ARGS={cmake}", None)
        built = _fresh(work / "wheel")
        compile_env = {**env, "CMAKE_ARGS": cmake,
                       "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 1)}  # fmt: skip

        largest = [0]

        def line(text: str) -> None:
            step = flags.ninja_step(text)
            # A sub-build's ninja (the Vulkan shader generator) counts its own few steps.
            if step is not None and step.total >= largest[0]:
                largest[0] = step.total
                phase("compile", step.describe(), step.percent)

        await self._run([*pip, "wheel", "--no-deps", "--no-cache-dir", "-v",
                                    str(sdists[0]), "-w", str(built)], log_file, compile_env,
                        line)  # fmt: skip
        wheels = sorted(built.glob("*.whl"))
        if not wheels:
            raise BuildFailed("pip built no wheel")
        return wheels[0]

    @staticmethod
    async def _run(argv: list[str], log_file: Path, env: Mapping[str, str],
                   on_line: Callable[[str], None] | None = None) -> None:  # fmt: skip
        session = log_file.with_name(SESSION_FILE)
        code = await run_logged(argv, log_file, env, on_line, session)
        session.unlink(missing_ok=True)
        if code != 0:
            what = " ".join([Path(argv[0]).name, *argv[1:4]])
            raise BuildFailed(f"{what} exited with status {code}")


def _fresh(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return directory
