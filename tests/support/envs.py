"""Real llama-cpp-python environment builds for the tests, through the agent's own Builder.

`build_cpu_env(root)` compiles the CPU environment once (llama-cpp-python DEFAULT_VERSION, ~5
minutes on 16 cores, 10-15 on 2) into ROOT/state-a/envs/cpu-<version>, verified, with its wheel
uploaded to an in-test WheelCache server keeping wheels in ROOT/wheels. tests/agent/conftest.py
has it as the session fixture `cpu_env`; other suites can reuse it (an agent started with
`--state-dir ROOT/state-a` finds the environment ready, or `--llama-env cpu=ENV_DIR`). With
$GPUFLEET_TEST_ENVS set, ROOT is that directory and is kept: a later session finds the ready
environment and the cached wheel and builds nothing (for local reruns).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from agent.envs.build import Builder, BuildSpec, Built
from agent.envs.preflight import SystemHost
from agent.envs.record import DEFAULT_VERSION, EnvRecord
from agent.envs.store import EnvStore
from agent.envs.wheels import GrpcWheels, NoCache, WheelCache
from agent.link import insecure_channel
from agent.probes import GpuInfo
from tests.agent.wheel_server import WheelServer

ROOT_ENV = "GPUFLEET_TEST_ENVS"
BUILD_TOOLS = {"g++": "g++", "gcc": "gcc", "cmake": "cmake"}  # program: Debian package
VULKAN_TOOLS = {"glslc": "glslc"}
VULKAN_FILES = {"/usr/include/vulkan/vulkan.h": "libvulkan-dev",
                "/usr/share/cmake/SPIRV-Headers": "spirv-headers",
                "/usr/share/vulkan/icd.d/lvp_icd.x86_64.json": "mesa-vulkan-drivers"}  # fmt: skip


def missing(tools: Mapping[str, str], files: Mapping[str, str] | None = None) -> str:
    """'' when everything is there, else which Debian packages to install."""
    lacking = [package for program, package in tools.items() if shutil.which(program) is None]
    lacking += [package for path, package in (files or {}).items() if not os.path.exists(path)]
    return f"install Debian's {', '.join(lacking)}" if lacking else ""


@dataclass
class Run:
    """One build: what it returned, the progress it reported, how long it took."""

    built: Built
    events: list[tuple[str, str, float | None]] = field(default_factory=list)
    seconds: float = 0.0

    def phases(self) -> list[str]:
        return list(dict.fromkeys(phase for phase, _, _ in self.events))


def builder(state_dir: Path, wheels: WheelCache, env: Mapping[str, str] | None = None,
            node: str = "node-a", gpus: tuple[GpuInfo, ...] = ()) -> Builder:  # fmt: skip
    found = {**os.environ, **(env or {})}

    async def probe() -> tuple[GpuInfo, ...]:
        return gpus

    return Builder(EnvStore(state_dir), SystemHost(found), wheels, probe, found, node)


def wheels_of(server: WheelServer | None) -> WheelCache:
    return NoCache() if server is None else GrpcWheels(insecure_channel(server.target))


def run_build(found: Builder, spec: BuildSpec) -> Run:
    run = Run(Built(EnvRecord("", "", "", ""), False, False, ""))

    def progress(phase: str, message: str, percent: float | None) -> None:
        run.events.append((phase, message, percent))

    began = time.monotonic()
    run.built = asyncio.run(found.build(spec, progress))
    run.seconds = time.monotonic() - began
    return run


@dataclass
class BuiltEnv:
    root: Path
    state_dir: Path
    server: WheelServer
    run: Run

    @property
    def record(self) -> EnvRecord:
        return self.run.built.record

    @property
    def directory(self) -> Path:
        return EnvStore(self.state_dir).directory(self.record.name)


def build_cpu_env(root: Path, version: str = DEFAULT_VERSION) -> BuiltEnv:
    server = WheelServer(root / "wheels")
    state = root / "state-a"
    run = run_build(builder(state, wheels_of(server)), BuildSpec("cpu", version))
    return BuiltEnv(root, state, server, run)
