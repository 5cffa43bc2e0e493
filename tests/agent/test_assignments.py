"""The agent's GPU assignments: validation, fallback, overrides per runtime, and what apply
runs, driven through a scripted process runner (no podman needed)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from agent.compose import Completed, Podman
from agent.overrides import ELSEWHERE_PROFILE, Target, fall_back, render
from agent.probes import GpuInfo, ProbeResult
from agent.probes.static import StaticProbe
from agent.projects import ProjectError, ProjectStore
from agent.tasks.apply_assignment import targets_from
from agent.tasks.context import TaskContext
from gpufleet.v1 import agent_link_pb2 as pb
from gpufleet.v1 import types_pb2
from tests.agent.support import run_task

INVENTORY = """gpus:
  - {index: 0, uuid: GPU-0, name: A5500, vendor: nvidia, memory_total_mb: 24564,
     memory_used_mb: 1000}
  - {index: 1, uuid: GPU-1, name: A400, vendor: nvidia, memory_total_mb: 4094}
"""


def task(project: str = "pair", /, **services: tuple[bool, list[int], float | None]
         ) -> pb.ApplyAssignment:  # fmt: skip
    found = []
    for name, (here, gpus, budget) in services.items():
        s = pb.ServiceAssignment(service=name, here=here, gpus=gpus)
        if budget is not None:
            s.vram_budget_gb = budget
        found.append(s)
    return pb.ApplyAssignment(project=project, services=found)


class ScriptedPodman:
    """Answers `podman ps` with the containers it holds and records every other command."""

    def __init__(self, containers: dict[str, str]) -> None:
        self.containers = containers  # service -> id
        self.calls: list[list[str]] = []

    async def __call__(self, argv: list[str], env: Mapping[str, str], limit: float) -> Completed:
        if argv[:2] == ["podman", "ps"]:
            rows = [
                {"Id": cid, "State": "running", "Labels": {"com.docker.compose.service": svc}}
                for svc, cid in self.containers.items()
            ]
            return Completed(0, json.dumps(rows), "")
        self.calls.append(argv)
        return Completed(0, "", "")


def runner(tmp_path: Path, podman: ScriptedPodman, runtime: str = "none") -> TaskContext:
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(INVENTORY)
    store = ProjectStore(tmp_path / "state", runtime)
    return TaskContext.create(store, Podman("gpu-a", run=podman), StaticProbe(inventory), {})


def apply(a: TaskContext, t: pb.ApplyAssignment) -> pb.TaskResult:
    return run_task(a, pb.TaskRequest(task_id="t1", apply_assignment=t))


@pytest.mark.parametrize("project", ["../etc", "a/b", "", "X"])
def test_project_names_from_the_wire_cannot_leave_the_state_dir(
    tmp_path: Path, project: str
) -> None:
    podman = ScriptedPodman({})
    result = apply(runner(tmp_path, podman), task(project, web=(True, [0], None)))
    assert (
        result.status == types_pb2.TASK_STATUS_FAILED and "refused project name" in result.message
    )
    assert not (tmp_path / "etc").exists() and podman.calls == []


def test_service_names_gpus_and_budgets_are_checked() -> None:
    with pytest.raises(ProjectError, match="refused service name"):
        targets_from(task(**{"../x": (True, [0], None)}))
    with pytest.raises(ProjectError, match="distinct GPU"):
        targets_from(task(web=(True, [0, 0], None)))
    with pytest.raises(ProjectError, match="VRAM budget"):
        targets_from(task(web=(True, [0], -1.0)))
    assert targets_from(task(web=(False, [3], 2.0))) == {"web": Target(False)}


def test_fallback_takes_the_freest_other_gpu_and_says_so() -> None:
    targets = {"a": Target(True, (3,)), "b": Target(True, (0,)), "c": Target(False)}
    out, fallbacks = fall_back(targets, [(0, 100), (1, 4000), (2, 9000)])
    assert out["a"] == Target(True, (2,)) and out["b"] == targets["b"]
    assert [(f.service, f.assigned, f.used) for f in fallbacks] == [("a", (3,), (2,))]
    assert fall_back(targets, None) == (targets, [])  # a probe that sees nothing judges nothing
    _, none_left = fall_back({"a": Target(True, (5,))}, [])
    assert none_left[0].used == (5,) and "no other GPU" in none_left[0].reason


def test_override_per_runtime() -> None:
    targets = {"llm": Target(True, (0, 1)), "enrich": Target(True, (1,), 3.5),
               "away": Target(False)}  # fmt: skip
    none = yaml.safe_load(render(targets, "none"))["services"]
    assert none["llm"]["environment"] == {"CUDA_VISIBLE_DEVICES": "0,1",
                                          "NVIDIA_VISIBLE_DEVICES": "0,1"}  # fmt: skip
    assert none["enrich"]["environment"]["VRAM_BUDGET_GB"] == "3.5"
    assert none["away"] == {"profiles": [ELSEWHERE_PROFILE]}
    amd = yaml.safe_load(render(targets, "amd"))["services"]
    assert amd["llm"]["environment"]["ROCR_VISIBLE_DEVICES"] == "0,1"
    cdi = yaml.safe_load(render(targets, "cdi"))["services"]
    devices = cdi["llm"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "device_ids": ["0", "1"], "capabilities": ["gpu"]}]
    assert render(targets, "none").startswith("# generated")


def test_apply_recreates_only_changed_services_and_keeps_the_previous(tmp_path: Path) -> None:
    podman = ScriptedPodman({"one": "id1", "two": "id2", "three": "id3"})
    a = runner(tmp_path, podman)
    project = a.store.project("pair")
    project.directory.mkdir(parents=True)
    project.compose_file.write_text(
        "services: {one: {image: x}, two: {image: x}, three: {image: x}}\n"
    )
    first = apply(a, task(one=(True, [0], None), two=(True, [1], None), three=(True, [0], None)))
    assert first.status == types_pb2.TASK_STATUS_CHANGED, first.message
    assert sorted(first.assignment.recreated) == ["one", "three", "two"]
    override = project.directory / "gpu-override.yaml"
    before = override.read_text()
    podman.calls.clear()
    second = apply(a, task(one=(True, [0], None), two=(True, [0], 2.5), three=(False, [], None)))
    assert list(second.assignment.recreated) == ["two"]
    assert list(second.assignment.removed) == ["three"]
    assert podman.calls[0][:3] == ["podman", "rm", "-f"] and podman.calls[0][-1] == "id3"
    up = podman.calls[1]
    assert up[-5:] == ["up", "-d", "--force-recreate", "--no-deps", "two"]
    assert str(override) in up  # the override is part of the compose run
    assert (project.directory / "gpu-override.previous.yaml").read_text() == before
    again = apply(a, task(one=(True, [0], None), two=(True, [0], 2.5), three=(False, [], None)))
    assert again.status == types_pb2.TASK_STATUS_OK and len(podman.calls) == 2


def test_apply_falls_back_when_the_assigned_gpu_is_missing(tmp_path: Path) -> None:
    a = runner(tmp_path, ScriptedPodman({}))
    result = apply(a, task(one=(True, [7], None)))
    assert result.status == types_pb2.TASK_STATUS_CHANGED
    [fallback] = result.assignment.fallbacks
    assert (list(fallback.assigned), list(fallback.used)) == ([7], [0])
    assert "does not run" in result.message and "GPU 7 is lost or missing" in result.message
    written = yaml.safe_load((a.store.project("pair").directory
                              / "gpu-override.yaml").read_text())  # fmt: skip
    assert written["services"]["one"]["environment"]["CUDA_VISIBLE_DEVICES"] == "0"


def test_cdi_compose_leaves_gpu_devices_to_the_override(tmp_path: Path) -> None:
    a = runner(tmp_path, ScriptedPodman({}), runtime="cdi")
    compose = ("services:\n  one:\n    image: x\n    deploy: {resources: {reservations: {devices: "
               "[{driver: nvidia, device_ids: ['0'], capabilities: [gpu]}]}}}\n")  # fmt: skip
    import hashlib

    digest = hashlib.sha256(compose.encode()).hexdigest()
    project = a.store.write("pair", compose, digest)
    assert "devices" in project.compose_file.read_text()
    apply(a, task(one=(True, [1], None)))
    assert "devices" not in project.compose_file.read_text()
    a.store.write("pair", compose, digest)  # a later switch writes it again
    assert "devices" not in project.compose_file.read_text()


class Gpus:
    """The GPU probe (the process edge): two GPUs whose states a test sets."""

    name = "static"

    def __init__(self) -> None:
        self.states = {0: "ok", 1: "ok"}

    def inventory(self) -> ProbeResult:
        return ProbeResult(self.name, tuple(
            GpuInfo(i, f"GPU-{i}", "A5500", "nvidia", 24564, 0, state=state)
            for i, state in self.states.items()
        ))  # fmt: skip


PAIR = "services: {one: {image: x}, two: {image: x}}\n"


def start(switching: TaskContext, check: bool = False) -> pb.TaskResult:
    digest = hashlib.sha256(PAIR.encode()).hexdigest()
    request = pb.TaskRequest(task_id="s1", check_mode=check, start_project=pb.StartProject(
        project="pair", compose=PAIR, digest=digest))  # fmt: skip
    return run_task(switching, request)


def visible(switching: TaskContext, service: str) -> str:
    override = switching.store.project("pair").directory / "gpu-override.yaml"
    found: str = yaml.safe_load(override.read_text())["services"][service]["environment"][
        "CUDA_VISIBLE_DEVICES"
    ]
    return found


def test_start_falls_back_from_a_lost_gpu_and_returns_once_it_is_back(tmp_path: Path) -> None:
    podman, gpus = ScriptedPodman({}), Gpus()
    switching = TaskContext.create(ProjectStore(tmp_path / "state"), Podman("gpu-a", run=podman),
                                   gpus, {})  # fmt: skip
    apply(switching, task(one=(True, [1], None), two=(True, [0], 2.0)))
    gpus.states[1] = "lost"

    would = start(switching, check=True)
    assert [f.service for f in would.assignment.fallbacks] == ["one"]
    assert visible(switching, "one") == "1" and podman.calls == []  # check mode changes nothing

    result = start(switching)
    assert result.status == types_pb2.TASK_STATUS_CHANGED, result.message
    [fallback] = result.assignment.fallbacks
    assert (fallback.service, list(fallback.assigned), list(fallback.used)) == ("one", [1], [0])
    assert "one: GPU 1 is lost or missing, using GPU 0" in result.message
    assert result.assignment.project.name == "pair"
    assert visible(switching, "one") == "0" and visible(switching, "two") == "0"
    [up] = podman.calls
    assert up[-2:] == ["up", "-d"] and up[up.index("-f", up.index("-f") + 1) + 1].endswith(
        "gpu-override.yaml"
    )
    state = json.loads((switching.store.project("pair").directory
                        / "gpu-assignment.json").read_text())  # fmt: skip
    assert (state["assigned"]["one"]["gpus"], state["current"]["one"]["gpus"]) == ([1], [0])

    gpus.states[1] = "ok"
    back = start(switching)
    assert not back.HasField("assignment") and back.project.name == "pair"
    assert "assigned GPUs are usable again" in back.message
    assert visible(switching, "one") == "1"


def test_start_without_assignments_or_with_usable_gpus_leaves_the_override(
    tmp_path: Path,
) -> None:
    podman, gpus = ScriptedPodman({}), Gpus()
    switching = TaskContext.create(ProjectStore(tmp_path / "state"), Podman("gpu-a", run=podman),
                                   gpus, {})  # fmt: skip
    plain = start(switching)
    assert plain.status == types_pb2.TASK_STATUS_CHANGED and plain.HasField("project")
    assert not (switching.store.project("pair").directory / "gpu-override.yaml").exists()
    apply(switching, task(one=(True, [1], None), two=(False, [], None)))
    override = switching.store.project("pair").directory / "gpu-override.yaml"
    written = override.read_text()
    again = start(switching)
    assert again.HasField("project") and again.message == "started pair: 0 containers"
    assert override.read_text() == written


def test_a_gpu_missing_from_the_inventory_at_start_falls_back_too(tmp_path: Path) -> None:
    a = runner(tmp_path, ScriptedPodman({}))
    switching = a
    apply(a, task(one=(True, [1], None)))
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(INVENTORY.split("  - {index: 1")[0])  # GPU 1 is gone from the host
    result = start(switching)
    assert [list(f.used) for f in result.assignment.fallbacks] == [[0]]
    assert visible(switching, "one") == "0"


class FailingPodman(ScriptedPodman):
    """Fails every compose command containing `word` while `failing` is set."""

    def __init__(self, containers: dict[str, str], word: str) -> None:
        super().__init__(containers)
        self.word, self.failing = word, True

    async def __call__(self, argv: list[str], env: Mapping[str, str], limit: float) -> Completed:
        done = await super().__call__(argv, env, limit)
        if self.failing and self.word in argv:
            return Completed(1, "", f"{self.word} failed here")
        return done


@pytest.mark.parametrize(
    ("running", "calls"),
    [({}, ["-d", "down", "-d"]),  # up, the failed up's clean-up, up again
     ({"one": "old1", "two": "old2"}, ["-d", "-d"])],  # what ran before is left as it was
)  # fmt: skip
def test_a_failed_up_does_not_claim_the_new_digest(
    tmp_path: Path, running: dict[str, str], calls: list[str]
) -> None:
    """A failed up is not reported under the new digest, and the same start sent again runs
    compose up again. When nothing ran before, the failed up is taken down (compose down, then
    whatever pod or network is left); containers that ran before it are not."""
    podman = FailingPodman(running, "up")
    switching = TaskContext.create(ProjectStore(tmp_path / "state"), Podman("gpu-a", run=podman),
                                   StaticProbe(tmp_path / "none.yaml"), {})  # fmt: skip
    failed = start(switching)
    assert failed.status == types_pb2.TASK_STATUS_FAILED, failed.message
    assert switching.store.project("pair").digest() == ""
    podman.failing = False
    again = start(switching)
    assert again.status == types_pb2.TASK_STATUS_CHANGED, again.message
    compose = [argv[-1] for argv in podman.calls if "--verbose" in argv]
    assert compose == calls
    assert switching.store.project("pair").digest() == hashlib.sha256(PAIR.encode()).hexdigest()
    if running:  # (this podman starts no containers of its own)
        assert start(switching).message == "pair already runs, nothing restarted"


def test_a_failed_recreate_leaves_the_assignment_to_apply_again(tmp_path: Path) -> None:
    podman = FailingPodman({"one": "id1", "two": "id2"}, "--force-recreate")
    a = runner(tmp_path, podman)
    a.store.write("pair", PAIR, hashlib.sha256(PAIR.encode()).hexdigest())
    podman.failing = False
    assert apply(a, task(one=(True, [0], None))).status == types_pb2.TASK_STATUS_CHANGED
    directory = a.store.project("pair").directory
    kept = {n: (directory / n).read_text() for n in ("gpu-override.yaml", "gpu-assignment.json")}
    podman.failing = True
    failed = apply(a, task(one=(True, [1], None)))
    assert failed.status == types_pb2.TASK_STATUS_FAILED, failed.message
    assert {n: (directory / n).read_text() for n in kept} == kept  # GPU 0 is still current
    assert not (directory / "gpu-override.previous.yaml").exists()
    podman.failing = False
    again = apply(a, task(one=(True, [1], None)))
    assert again.status == types_pb2.TASK_STATUS_CHANGED, again.message
    assert "recreated one" in again.message


class Broken:
    """A preflight that finds a problem (agent/preflight.py's interface)."""

    problem = "podman not found on PATH: install Debian's package podman"
    staled = 0

    async def problems(self) -> tuple[str, ...]:
        return (self.problem,)

    async def current(self, wait: float) -> tuple[str, ...]:
        return await self.problems()

    def stale(self) -> None:
        self.staled += 1


def test_a_preflight_problem_fails_start_and_apply_at_once(tmp_path: Path) -> None:
    for place in ("a", "b"):
        (tmp_path / place).mkdir()
    podman = ScriptedPodman({})
    failed = start(replace(runner(tmp_path / "b", podman), preflight=Broken()))
    assert failed.status == types_pb2.TASK_STATUS_FAILED
    assert failed.message == f"cannot start pair: {Broken.problem}"
    assert podman.calls == []  # no compose ran, nothing was written or started

    running = ScriptedPodman({"one": "id1", "two": "id2"})
    a = runner(tmp_path / "a", running)
    assert start(a).status == types_pb2.TASK_STATUS_CHANGED
    applied = apply(replace(a, preflight=Broken()), task(one=(True, [1], None)))
    assert applied.status == types_pb2.TASK_STATUS_FAILED
    assert applied.message == f"cannot recreate services of pair: {Broken.problem}"
    assert not [argv for argv in running.calls if "--force-recreate" in argv]
