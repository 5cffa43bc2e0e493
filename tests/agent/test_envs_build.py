"""Real builds (tests/support/envs.py): the CPU environment compiled once per session, verified,
its wheel uploaded to an in-test WheelCache server; a second node installs it from the cache
without compiling; a ready environment is not built again; a build cancelled mid-compile leaves
nothing running and no partial venv."""

from __future__ import annotations

import asyncio
import os
import platform
import sys
import time
from pathlib import Path

import pytest

from agent.envs import flags
from agent.envs.build import BuildSpec
from agent.envs.record import CACHE, COMPILED, FAILED, READY
from agent.envs.store import EnvStore
from agent.envs.wheels import NoCache
from gpufleet import envkey
from tests.support.envs import BuiltEnv, builder, run_build, wheels_of

COMPILE_PHASES = {"fetch", "configure", "compile"}


# A compile takes 5-15 minutes (CI's 2 cores): the session's first test waits for it.
pytestmark = pytest.mark.timeout(3600)


def test_the_cpu_environment_is_compiled_verified_and_uploaded(cpu_env: BuiltEnv) -> None:
    record, run = cpu_env.record, cpu_env.run
    assert run.built.ok, run.built.message
    assert record.state == READY and record.origin in (COMPILED, "")
    assert record.gpu_offload is False and record.devices == ()
    assert "CPU :" in record.system_info
    assert record.message.startswith("verified: the test model loads and answers")
    directory = cpu_env.directory
    assert (directory / "bin" / "python").is_file()
    assert not (directory / ".build").exists()  # the source, build tree and wheel are gone
    assert EnvStore(cpu_env.state_dir).read(record.name) == record
    assert record.size_bytes > 10_000_000
    assert cpu_env.server.servicer.uploads == [record.key] or not run.built.changed
    if run.built.changed:  # built in this session (not reused from $GPUFLEET_TEST_ENVS)
        phases = run.phases()
        assert phases == ["preflight", "venv", "cache", "fetch", "configure", "compile",
                          "install", "verify", "upload"], phases  # fmt: skip
        steps = [flags.ninja_step(m.replace("compile ", "[").replace(" (", "] (", 1))
                 for p, m, _ in run.events if p == "compile"]  # fmt: skip
        assert steps and all(s is not None for s in steps)
        percents = [pct for p, _, pct in run.events if p == "compile"]
        assert percents[-1] == 100.0 and percents == sorted(percents)  # type: ignore[type-var]
        configure = next(m for p, m, _ in run.events if p == "configure")
        assert configure == "CMAKE_ARGS=-DGGML_NATIVE=OFF"
        log = (directory / "build.log").read_text()
        assert "--no-cache-dir" in log and "(exit status 0)" in log and "$ verification" in log
        print(f"\ncpu environment compiled and verified in {run.seconds:.0f} s")


def test_a_second_node_installs_the_wheel_from_the_cache_without_compiling(
    cpu_env: BuiltEnv, tmp_path: Path
) -> None:
    run = run_build(builder(tmp_path / "state-b", wheels_of(cpu_env.server), node="node-b"),
                    BuildSpec("cpu", cpu_env.record.version))  # fmt: skip
    assert run.built.ok, run.built.message
    assert not COMPILE_PHASES & set(run.phases()), run.phases()
    assert run.phases() == ["preflight", "venv", "cache", "install", "verify"]
    record = run.built.record
    assert record.state == READY and record.origin == CACHE and record.key == cpu_env.record.key
    assert "CPU :" in record.system_info and record.gpu_offload is False
    assert "installed from the cluster cache" in run.built.message
    assert cpu_env.server.servicer.downloads[-1] == record.key
    print(f"\nsecond node ready from the cluster cache in {run.seconds:.1f} s")


def test_the_key_names_what_makes_the_wheel_compatible(cpu_env: BuiltEnv) -> None:
    record = cpu_env.record
    libc = " ".join(platform.libc_ver())
    python = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    parts = envkey.parts(record.version, "cpu", "", (), os.uname().machine, libc, python)
    assert libc.startswith("glibc 2.") and record.key == envkey.key(parts)


def test_a_ready_environment_is_not_built_again(cpu_env: BuiltEnv) -> None:
    run = run_build(builder(cpu_env.state_dir, NoCache()), BuildSpec("cpu", cpu_env.record.version))
    assert run.built.ok and not run.built.changed
    assert run.built.message == f"{cpu_env.record.name} is ready already, nothing done"
    assert run.events == []


def test_a_build_cancelled_mid_compile_kills_its_processes_and_leaves_no_venv(
    tmp_path: Path, cpu_env: BuiltEnv
) -> None:
    state = tmp_path / "state-c"
    found = builder(state, NoCache())
    seen: list[str] = []

    async def scenario() -> None:
        compiling = asyncio.Event()

        def progress(phase: str, message: str, percent: float | None) -> None:
            seen.append(phase)
            if phase == "compile":
                compiling.set()

        work = asyncio.create_task(found.build(BuildSpec("cpu", cpu_env.record.version),
                                               progress))  # fmt: skip
        await asyncio.wait_for(compiling.wait(), 600)
        work.cancel()
        try:
            await work
        except asyncio.CancelledError:
            return
        raise AssertionError("the build was not cancelled")

    asyncio.run(scenario())
    store = EnvStore(state)
    name = f"cpu-{cpu_env.record.version}"
    record = store.read(name)
    assert record is not None and record.state == FAILED
    assert record.message == "cancelled during compile"
    directory = store.directory(name)
    assert sorted(p.name for p in directory.iterdir()) == ["build.log", "env.json"]
    assert "(stopped: the build was cancelled)" in (directory / "build.log").read_text()
    deadline = time.monotonic() + 10
    while _processes_under(directory) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _processes_under(directory), "a compiler or pip outlived the cancel"


def _processes_under(directory: Path) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(directory) in cmdline:
            found.append(f"{entry.name}: {cmdline[:120]}")
    return found
