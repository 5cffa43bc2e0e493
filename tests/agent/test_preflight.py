"""The podman preflight's checks over a scripted host, the cache's once-only log, and the root
cause line of a failed podman-compose run."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from agent.preflight import Preflight, Setup, blocking, checks, info_problem
from agent.rootcause import root_cause, short

CNI = "/usr/lib/cni"


def info(backend: str = "netavark", runtime: str = "runc", path: str = "/usr/bin/runc",
         cgroups: str = "v2") -> str:  # fmt: skip
    host = {"networkBackend": backend, "cgroupVersion": cgroups,
            "ociRuntime": {"name": runtime, "path": path}}  # fmt: skip
    return json.dumps({"host": host})


@dataclass
class FakeHost:
    tools: set[str] = field(default_factory=lambda: {"podman"})
    modules: set[str] = field(default_factory=lambda: {"podman_compose"})
    answer: tuple[int, str, str] = (0, info(), "")
    files: dict[str, str] = field(default_factory=dict)
    environ: dict[str, str] = field(default_factory=dict)
    ran: list[list[str]] = field(default_factory=list)

    def which(self, name: str) -> str | None:
        return f"/usr/bin/{name}" if name in self.tools else None

    def run(self, argv: Sequence[str]) -> tuple[int, str, str]:
        self.ran.append(list(argv))
        return self.answer

    def has_module(self, name: str) -> bool:
        return name in self.modules

    def read(self, path: str) -> str | None:
        return self.files.get(path)

    def listdir(self, path: str) -> list[str]:
        return sorted({p[len(path) + 1 :].split("/")[0] for p in self.files
                       if p.startswith(path + "/")})  # fmt: skip

    def env(self, name: str) -> str | None:
        return self.environ.get(name)


def test_a_working_host_has_no_problems() -> None:
    host = FakeHost()
    assert checks(host, Setup("cdi", nvidia_gpus=False)) == []
    assert host.ran == [["podman", "info", "--format", "json"]]


def test_podman_missing_names_the_package_and_runs_nothing() -> None:
    host = FakeHost(tools=set(), modules=set())
    found = checks(host, Setup())
    assert found[0] == "podman not found on PATH: install Debian's package podman"
    assert "pip install podman-compose" in found[1]
    assert host.ran == []


def test_cni_without_plugins_and_with_them() -> None:
    host = FakeHost(answer=(0, info(backend="cni"), ""))
    [problem] = checks(host, Setup())
    assert "network backend is CNI but no CNI bridge plugin" in problem
    assert "containernetworking-plugins" in problem
    host.files[f"{CNI}/bridge"] = ""
    assert checks(host, Setup()) == []


def test_cni_plugin_dirs_come_from_containers_conf() -> None:
    conf = '[network]\ncni_plugin_dirs = ["/opt/mine"]\n'
    host = FakeHost(answer=(0, info(backend="cni"), ""), environ={"CONTAINERS_CONF": "/c.conf"},
                    files={"/c.conf": conf, f"{CNI}/bridge": ""})  # fmt: skip
    [problem] = checks(host, Setup())
    assert "(looked in /opt/mine)" in problem and "of /c.conf" in problem
    host.files["/opt/mine/bridge"] = ""
    assert checks(host, Setup()) == []


@pytest.mark.parametrize(
    ("stderr", "expected"),
    [
        ('Error: could not find "netavark" in one of [/usr/lib/podman].  To resolve...',
         "podman cannot find netavark, its network backend: install Debian's package netavark"),
        ('Error: default OCI runtime "crun" not found: invalid argument',
         "podman's OCI runtime crun is not installed: install Debian's package crun, or "
         'install runc and set runtime = "runc" in [engine] of /etc/containers/containers.conf'),
        ("Error: something new\n", "podman info fails (Error: something new)"),
        ("", "podman info fails (exit status 125)"),
    ],
)  # fmt: skip
def test_a_failing_podman_info_is_one_line_with_its_fix(stderr: str, expected: str) -> None:
    assert info_problem(stderr, 125).startswith(expected)
    [problem] = checks(FakeHost(answer=(125, "", stderr)), Setup())
    assert problem.startswith(expected)


def test_crun_on_cgroups_v1_and_a_runtime_without_a_binary() -> None:
    [problem] = checks(FakeHost(answer=(0, info(runtime="crun", cgroups="v1"), "")), Setup())
    assert problem.startswith("possibly: podman's OCI runtime crun may fail on this host's cgroups")
    assert 'runtime = "runc"' in problem
    assert blocking([problem]) == []  # crun runs on many v1 hosts: said, but no start fails
    assert checks(FakeHost(answer=(0, info(runtime="crun", path="/usr/bin/crun"), "")),
                  Setup()) == []  # fmt: skip
    [missing] = checks(FakeHost(answer=(0, info(path=""), "")), Setup())
    assert missing == "podman's OCI runtime runc is not installed: install Debian's package runc"


def test_cdi_spec_needed_only_for_nvidia_gpus_under_cdi() -> None:
    host = FakeHost()
    [problem] = checks(host, Setup("cdi", nvidia_gpus=True))
    assert "no NVIDIA CDI spec" in problem
    assert "nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml" in problem
    assert checks(host, Setup("none", nvidia_gpus=True)) == []
    assert checks(host, Setup("cdi", nvidia_gpus=False)) == []
    host.files["/var/run/cdi/other.yaml"] = "kind: amd.com/gpu\n"
    assert len(checks(host, Setup("cdi", nvidia_gpus=True))) == 1
    host.files["/var/run/cdi/nvidia.yaml"] = "cdiVersion: 0.5.0\nkind: nvidia.com/gpu\n"
    assert checks(host, Setup("cdi", nvidia_gpus=True)) == []


def test_the_cache_runs_again_when_stale_and_logs_each_problem_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs: list[list[str]] = [["broken: fix it"], ["broken: fix it"], []]
    now = [0.0]
    cached = Preflight(lambda: runs.pop(0), refresh_s=60, clock=lambda: now[0])

    async def go() -> list[tuple[str, ...]]:
        seen = [await cached.problems(), await cached.problems()]  # one run
        cached.stale()  # a compose run failed
        seen.append(await cached.problems())
        now[0] = 61.0  # old enough
        seen.append(await cached.problems())
        return seen

    with caplog.at_level(logging.INFO, logger="agent.preflight"):
        seen = asyncio.run(go())
    assert seen == [("broken: fix it",)] * 3 + [()]
    assert runs == []
    said = [r.getMessage() for r in caplog.records]
    assert said == ["preflight: broken: fix it",
                    "preflight: the podman problems reported before are gone"]  # fmt: skip


VERBOSE_FAILURE = """\
INFO:__main__:['podman', '--version', '']
INFO:__main__:podman pod exists pod_gf-a-b
INFO:__main__:exit code: 1
INFO:__main__:podman pod create --name=pod_gf-a-b --infra=false --share=
INFO:__main__:exit code: 0
INFO:__main__:podman create --name=gf-a-b_web_1 --label io.podman.compose.project=gf-a-b \
--label com.docker.compose.service=web localhost/does-not-exist sleep 100
Trying to pull localhost/does-not-exist:latest...
time="x" level=warning msg="Failed, retrying in 1s ... (1/3). Error: pinging registry"
Error: initializing source docker://localhost/does-not-exist:latest: connection refused
INFO:__main__:exit code: 125
INFO:__main__:podman start gf-a-b_web_1
Error: no container with name or ID "gf-a-b_web_1" found: no such container
INFO:__main__:exit code: 125
"""

TRACEBACK = """\
INFO:__main__:['podman', 'network', 'exists', 'gf-a-b_default']
INFO:__main__:['podman', 'network', 'create', '--label', 'x=y', 'gf-a-b_default']
Error: netavark: failed to create bridge: Operation not permitted
Traceback (most recent call last):
  File "/usr/lib/python3/dist-packages/podman_compose.py", line 3000, in main
    podman_compose.run()
  File "/usr/lib/python3/dist-packages/podman_compose.py", line 1000, in assert_cnt_nets
    compose.podman.output([], "network", args)
subprocess.CalledProcessError: Command '['podman', 'network', 'create', '--label', 'x=y', \
'gf-a-b_default']' returned non-zero exit status 125.
"""


def test_the_root_cause_is_the_first_failing_podman_command_and_its_error() -> None:
    assert root_cause(VERBOSE_FAILURE, "0a04e289\n", 125) == (
        "podman create --name=gf-a-b_web_1 localhost/does-not-exist sleep 100: "
        "Error: initializing source docker://localhost/does-not-exist:latest: "
        "connection refused"
    )


def test_a_traceback_gives_its_command_and_error_never_its_tail() -> None:
    cause = root_cause(TRACEBACK, "", 1)
    assert cause == ("podman network create gf-a-b_default: Error: netavark: failed to create "
                     "bridge: Operation not permitted")  # fmt: skip
    assert "Traceback" not in cause and "File " not in cause
    bare = "Traceback (most recent call last):\n  File \"x\", line 1\nKeyError: 'services'\n"
    assert root_cause(bare, "", 1) == "KeyError: 'services'"


def test_plain_output_and_silence() -> None:
    assert root_cause("warning: slow\nError: boom\nmore\n", "", 2) == "Error: boom"
    assert root_cause("", "", 3) == "exit status 3"
    assert len(short(["podman", "run", *["--label", "k=v"] * 50, "x" * 300])) == 160


def test_a_slow_check_does_not_hold_hellos_and_heartbeats() -> None:
    gate = threading.Event()

    def slow() -> list[str]:
        gate.wait(10)
        return ["podman info fails (hung): podman cannot run containers"]

    cached = Preflight(slow)

    async def go() -> tuple[tuple[str, ...], ...]:
        began = time.monotonic()
        first = await cached.current(0.2)  # the hello waits this long at most
        second = await cached.current(0.0)  # a heartbeat does not wait
        waited = time.monotonic() - began
        gate.set()
        third = await cached.problems()  # a start waits for the running check (only one)
        return first, second, third, (f"{waited:.1f}",)

    first, second, third, (waited,) = asyncio.run(go())
    assert first == second == () and float(waited) < 1.0
    assert third == ("podman info fails (hung): podman cannot run containers",)


def test_a_failure_during_a_check_makes_the_next_start_check_again() -> None:
    """stale() while a check runs: that check's answer (begun before the failure) is used,
    but does not count as fresh, so the next start checks the host again."""
    gate = threading.Event()
    runs = [0]

    def run() -> list[str]:
        runs[0] += 1
        if runs[0] == 1:
            gate.wait(10)
        return []

    cached = Preflight(run, refresh_s=300)

    async def go() -> None:
        first = asyncio.ensure_future(cached.problems())
        await asyncio.sleep(0.05)  # the check runs
        cached.stale()  # a compose run failed meanwhile
        gate.set()
        await first
        await cached.problems()

    asyncio.run(go())
    assert runs[0] == 2
