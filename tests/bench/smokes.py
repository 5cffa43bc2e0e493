"""Each benchmark's smallest run: its flags, the figure lines it must print, and what it
needs from the machine. tests/bench/test_smoke.py runs every one of them."""

from __future__ import annotations

import functools
import importlib.util
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import need
from tests.packaging.conftest import built_rpms, installed_root
from tests.support import podman
from tests.support.nvml import FakeNvmlUnavailable, build_library
from tests.support.procs import REPO

NUM = r"\d+(?:\.\d+)?"


def nothing(request: pytest.FixtureRequest) -> list[str]:
    """No prerequisite and no flags beyond the smoke's own."""
    return []


def gcc(request: pytest.FixtureRequest) -> list[str]:
    """The simulated NVML builds here (gcc and libc headers)."""
    try:
        build_library(request.getfixturevalue("tmp_path") / "nvml")
    except FakeNvmlUnavailable as exc:
        if "gcc not found" not in str(exc):
            raise
        need(str(exc))
    return []


def ortools(request: pytest.FixtureRequest) -> list[str]:
    if importlib.util.find_spec("ortools") is None:
        need("OR-Tools is missing: pip install -e '.[optimal]' (or '.[dev]')")
    return []


def llama(request: pytest.FixtureRequest) -> list[str]:
    """llama-cpp-python's server and the gguf writer (the tiny models) are installed."""
    absent = [name for name in ("llama_cpp", "gguf") if importlib.util.find_spec(name) is None]
    if absent:
        need(f"{' and '.join(absent)} missing: pip install -e '.[llama]'")
    return []


def cpu_wheel(request: pytest.FixtureRequest) -> list[str]:
    """The session's real CPU environment build (tests/conftest.py `cpu_env`): its wheel
    seeds the hub's cache, so the smallest run compiles nothing."""
    llama(request)
    return ["--wheels", str(request.getfixturevalue("cpu_env").root / "wheels")]


@functools.cache
def litellm_bin() -> tuple[str, str]:
    """scripts/litellm, once per session: (the venv's bin directory, '') or ('', why not)."""
    try:
        done = subprocess.run([str(REPO / "scripts" / "litellm")], capture_output=True,
                              text=True, timeout=600, check=False)  # fmt: skip
    except subprocess.TimeoutExpired:
        return "", "scripts/litellm ran over 600 s"
    if done.returncode != 0:
        return "", f"scripts/litellm failed ({done.returncode}): {done.stderr.strip()[-500:]}"
    return done.stdout.strip().splitlines()[-1], ""


def litellm_and_llama(request: pytest.FixtureRequest) -> list[str]:
    """LiteLLM's proxy in its own venv (scripts/litellm installs it; the comparison needs it)
    and llama-cpp-python for the cold start."""
    found, why = litellm_bin()
    if why:
        need(f"{why}: LiteLLM's proxy is missing (run scripts/litellm)")
    llama(request)
    return ["--litellm", str(Path(found) / "litellm")]


def moto(request: pytest.FixtureRequest) -> list[str]:
    """moto's S3 server (tests/support/s3server.py) runs here."""
    absent = [m for m in ("moto", "flask", "flask_cors") if importlib.util.find_spec(m) is None]
    if absent:
        need(f"{', '.join(absent)} missing: pip install -e '.[dev]' (moto's S3 server)")
    return []


def registry_row(store: str, plain: str) -> str:
    return (
        rf"{store} +agent fetch +{NUM} MB/s +{plain} +{NUM} MB/s +ratio {NUM} "
        r"\(goal >= 0\.9: (met|missed)\)"
    )


def task_row(store: str) -> str:
    return rf"{store} +the agent's task alone +{NUM} MB/s \(the operation around it: -?{NUM} s\)"


def real_podman(request: pytest.FixtureRequest) -> list[str]:
    """Podman runs containers here and the busybox test image is built."""
    try:
        podman.build_image()
    except podman.PodmanMissing as exc:
        need(str(exc))
    return []


def installed_rpms(request: pytest.FixtureRequest) -> list[str]:
    """The session's RPMs (shared with tests/packaging), installed into a scratch root:
    the daemons run from the packaged venv."""
    rpms = built_rpms(request).rpms
    root = installed_root(request)
    directory = Path(next(iter(rpms.values()))).parents[1]
    return ["--rpms", str(directory), "--python", str(root / "opt/gpufleet/venv/bin/python")]


@dataclass(frozen=True)
class Smoke:
    args: tuple[str, ...]
    figures: tuple[str, ...]
    """Regular expressions; each must match a whole line of the benchmark's output."""
    prepare: Callable[[pytest.FixtureRequest], list[str]] = field(default=nothing)
    """Checks what the run needs (skipping outside CI when a package is missing) and returns
    flags to add."""
    timeout: float = 90


def startup_row(label: str) -> str:
    return rf"{label} +{NUM}s +{NUM}s +{NUM}s +{NUM}s"


def gateway_row(mode: str, target: str) -> str:
    cpu = "" if target == "direct" else rf"  cpu {NUM} ms/req"
    ratios = rf"p50 x{NUM}  p99 x{NUM}{cpu}"
    return rf"{mode} +{target} +p50 +{NUM} ms +p99 +{NUM} ms +{NUM} req/s +{ratios}"


# fmt: off
SMOKES: dict[str, Smoke] = {
    "agent_heartbeat": Smoke(
        ("--interval", "0.5", "--window", "2"),
        (rf"agent RSS +{NUM} MiB", rf"agent CPU per heartbeat +{NUM} ms .*",
         rf"NVML probe, 8 GPUs +{NUM} ms per full probe", r"heartbeat on the wire +\d+ bytes .*",
         r"hello on the wire +\d+ bytes"),
        prepare=gcc,
    ),
    "cli_latency": Smoke(
        ("--runs", "1"),
        (rf"hubctl nodes +{NUM}s +{NUM}s", rf"hubctl gpus +{NUM}s +{NUM}s",
         rf"python -m cli nodes --json +{NUM}s +{NUM}s"),
    ),
    "enroll": Smoke(
        ("--agents", "3", "--heartbeat", "0.5", "--window", "1"),
        (rf"join \(in-process\) +median {NUM} ms, p99 {NUM} ms",
         rf"all ready after +{NUM} s .*", rf"hub RSS idle / connected +{NUM} / {NUM} MiB .*",
         rf"hub CPU +{NUM} % of one core .*"),
    ),
    "envs": Smoke(
        ("--backends", "cpu", "--switches", "1"),
        (rf"cpu +node a \(installed from --wheels *\) +{NUM} s .*",
         rf"cpu +node b \(from the cluster cache\) +{NUM} s .*",
         rf"switch-backend cpu <-> cpu-\S+: 2 instant switches, median {NUM} s .*",
         rf"model load by hand .* median {NUM} s",
         rf"switch excluding the model's load +{NUM} s .*"),
        prepare=cpu_wheel,
        timeout=300,
    ),
    "gateway": Smoke(
        ("--requests", "60", "--concurrency", "4", "--warmup", "10", "--cold-start",
         "--cold-runs", "1"),
        (*(gateway_row(mode, target) for mode in ("non-streaming", "streaming")
           for target in ("direct", "gateway", "litellm")),
         r"goal: gateway p50 within 1.05x of direct: .*: (met|missed)",
         r"goal: gateway p50 overhead below LiteLLM's: .*: (met|missed)",
         rf"cold start +request to first token +median {NUM} s .*",
         rf"cold start +start \(to model ready\) +median {NUM} s",
         rf"cold start +ready to first token +median {NUM} s",
         rf"warm request +first token +median {NUM} s"),
        prepare=litellm_and_llama,
        timeout=240,
    ),
    "hub_agents": Smoke(
        ("--agents", "5", "--procs", "2", "--heartbeat", "0.5", "--window", "1", "--tls",
         "--listings", "--restart"),
        (rf"all ready after +{NUM} s", r"still ready after window +5/5",
         r"dropped in window +0 \(0 reconnects, 0 failed attempts, 0 not connected\)",
         rf"hub RSS idle / connected +{NUM} / {NUM} MiB \(-?{NUM} KiB per agent\)",
         rf"hub CPU +{NUM} % of one core .*", rf"heartbeats +{NUM}/s \(.*\)",
         rf"database growth +-?\d+ bytes in {NUM} s \(-?{NUM} MB per 1,000 agents per day\)",
         *(rf"hubctl {name} +first line {NUM} s, all {NUM} s \(\d+ lines\)"
           for name in ("nodes", "gpus", "status")),
         rf"restart: all ready after +{NUM} s \(\d+ failed attempts, \d+ cut before Welcome\)",
         r"\| 5 \| SQLite \| mutual TLS \|( [^|]+ \|){13}"),
    ),
    "grpc_floor": Smoke(
        ("--streams", "20"),
        (r"streams +20 \(one message each, 200 bytes, 1 client processes\)",
         *(rf"{style} +handed {NUM} s, sent {NUM} s, received p50/p99/max {NUM} / {NUM} / {NUM} s"
           for style in ("generator", "write"))),
    ),
    "listings": Smoke(
        ("--nodes", "200", "--runs", "1"),
        (r"200 nodes x 4 GPUs \(sqlite filled in .*",
         *(rf"hubctl {command} +{NUM}s +{NUM}s +{lines} +{NUM}s +{NUM}s"
           for command, lines in (("nodes", 201), ("gpus", 801), ("status", 201)))),
    ),
    "link_memory": Smoke(
        ("--links", "20"),
        (r"20 links, each one bidi stream; grpc \S+",
         *(rf"{label} +-?{NUM} KiB per link" for label in
           ("plaintext", "mutual TLS, glibc's default heap", "mutual TLS, the hub's heap"))),
    ),
    "metrics_scrape": Smoke(
        ("--nodes", "20", "--gpus", "2", "--runs", "1"),
        (rf"20 nodes x 2 GPUs, 10 connected: scrape {NUM} s \(median of 1, on a reader "
         rf"thread\), \d+ bytes",),
    ),
    "model_switch": Smoke(
        ("--runs", "1"),
        (rf"through hub \+ agent +median {NUM} s .*",
         rf"by hand \(stop \+ start \+ poll\) +median {NUM} s .*", rf"ratio of medians +{NUM} .*"),
        prepare=llama,
        timeout=120,
    ),
    "placement": Smoke(
        ("--random", "2", "--limit", "1"),
        (rf"seed host \(2 / 5\) +balanced +{NUM} +\d/5 .*",
         rf"seed host \(2 / 5\) +optimal +{NUM} +\d/5 .*",
         rf"8,000 GPUs / 20,000 +balanced +{NUM} +\d+/20000 .*",
         r"2 random feasible instances: .*", r"goal: balanced median ratio <= 1.05: .*"),
        prepare=ortools,
    ),
    "registration": Smoke(
        ("--agents", "20", "--batch", "8", "--one-by-one", "10"),
        (rf"new nodes +{NUM} s .*", rf"restart, nothing changed +{NUM} s .*",
         rf"restart, new telemetry +{NUM} s .*",
         rf"one by one \(Store.register\), new +{NUM} s .*"),
    ),
    "registry": Smoke(
        ("--size-mb", "16", "--runs", "1"),
        (r"size +16 MiB, 1 runs each, loopback, .*",
         registry_row("embedded", "bare gRPC Download"), registry_row("s3", "boto3 download_file"),
         task_row("embedded"), task_row("s3")),
        prepare=moto,
        timeout=180,
    ),
    "startup": Smoke(
        ("--runs", "1"),
        (rf"gpufleet-runtime-\S+\.rpm +{NUM} MiB +{NUM} MiB", startup_row("hub, first start"),
         startup_row("hub, restart"), startup_row("agent, joins at start"),
         startup_row("agent, hub up"), startup_row(r"agent, no hub \(retrying\)")),
        prepare=installed_rpms,
    ),
    "telemetry_growth": Smoke(
        ("--agents", "5"),
        (rf"before: one connect of 5 agents: {NUM} MiB of audit log",
         rf"after: {NUM}(,\d+)* samples written at .*",
         r"after: raw samples kept .* bounded at 14 d"),
    ),
    "switch_fanout": Smoke(
        ("--agents", "3"),
        (r"switch --all to 1st drain +\d+ ms",
         rf"switch --all to all done +{NUM} s \(succeeded\)"),
    ),
    "switch_overhead": Smoke(
        ("--runs", "1"),
        (rf"through hub \+ agent +median {NUM} s .*",
         rf"by hand \(compose \+ poll\) +median {NUM} s .*", rf"ratio of medians +{NUM} .*"),
        prepare=real_podman,
        timeout=120,
    ),
}
# fmt: on
