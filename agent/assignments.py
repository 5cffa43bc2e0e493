"""GPU assignments on the agent: a compose override per project, and only changed services
recreated.

The hub sends, for every GPU service of a configuration, whether it runs on this node and on
which GPUs. The agent turns that into `gpu-override.yaml` beside the project's compose file,
for its GPU runtime (cdi: an NVIDIA device reservation; amd: ROCR/HIP_VISIBLE_DEVICES; none:
NVIDIA/CUDA_VISIBLE_DEVICES; VRAM_BUDGET_GB where a budget applies; services that run elsewhere
get a profile that is never enabled). The override before it is kept as
`gpu-override.previous.yaml`, with the targets of both in `gpu-assignment.json`. When the
project runs, services whose target changed are recreated alone and those now elsewhere are
removed. A GPU the probe reports lost or missing is replaced by another GPU of this node (and
again when the project starts: agent/switching.py). The override itself: agent/overrides.py.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Sequence

import yaml

from agent.overrides import (
    Fallback,
    Target,
    describe,
    fall_back,
    read_state,
    render,
    report,
    usable_gpus,
    write_override,
    write_state,
)
from agent.probes import GpuProbe
from agent.projects import COMPOSE_FILE, OVERRIDE_FILE, Project, ProjectError, strip_gpu_devices
from agent.switching import CHANGED, FAILED, OK, Switching
from gpufleet.v1 import agent_link_pb2 as pb

SERVICE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$")
PREVIOUS_FILE = "gpu-override.previous.yaml"
MAX_GPU_INDEX = 1023
Emit = Callable[[pb.AgentMessage], None]


def targets_from(task: pb.ApplyAssignment) -> dict[str, Target]:
    """Validated targets: names and numbers from the wire are checked before any use."""
    found: dict[str, Target] = {}
    for s in task.services:
        if not SERVICE.match(s.service) or s.service in found:
            raise ProjectError(
                f"refused service name {s.service[:80]!r}: names are "
                "[a-zA-Z0-9_.-], at most 64 characters, each once"
            )
        gpus = tuple(s.gpus)
        if s.here and (not gpus or len(set(gpus)) != len(gpus) or max(gpus) > MAX_GPU_INDEX):
            raise ProjectError(f"{s.service}: needs distinct GPU indices, got {list(gpus)}")
        budget = s.vram_budget_gb if s.HasField("vram_budget_gb") else None
        if budget is not None and not (math.isfinite(budget) and 0 < budget < 1e6):
            raise ProjectError(f"{s.service}: VRAM budget must be a positive number of GB")
        found[s.service] = Target(s.here, gpus if s.here else (), budget if s.here else None)
    return found


class Assignments:
    def __init__(self, switching: Switching, probe: GpuProbe) -> None:
        self.switching = switching
        self.probe = probe

    def _write(
        self,
        project: Project,
        wanted: dict[str, Target],
        targets: dict[str, Target],
        before: dict[str, Target],
        text: str,
    ) -> None:
        directory = project.directory
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        override = directory / OVERRIDE_FILE
        if override.is_file():
            os.replace(override, directory / PREVIOUS_FILE)
        write_override(directory, text)
        write_state(directory, wanted, targets, before)
        compose = directory / COMPOSE_FILE
        if self.switching.store.runtime == "cdi" and compose.is_file():
            document = yaml.safe_load(compose.read_text())
            stripped = strip_gpu_devices(document, set(targets))
            compose.write_text(yaml.safe_dump(stripped, sort_keys=False))

    async def apply(self, request: pb.TaskRequest, emit: Emit) -> pb.TaskResult:
        task = request.apply_assignment
        try:
            project = self.switching.store.project(task.project)
            wanted = targets_from(task)
        except ProjectError as exc:
            return _result(FAILED, str(exc))
        targets, fallbacks = fall_back(wanted, await usable_gpus(self.probe))
        recorded = read_state(project.directory)
        before = recorded.current if recorded is not None else {}
        text = render(targets, self.switching.store.runtime)
        override = project.directory / OVERRIDE_FILE
        unchanged = override.is_file() and override.read_text() == text
        changed = sorted(n for n in targets if before.get(n) != targets[n])
        _, containers = await self.switching.running(task.project)
        running = {c.service: c for c in containers}
        if request.check_mode:
            status = OK if unchanged else CHANGED
            return _result(
                status, f"would recreate {', '.join(changed) or 'nothing'}", fallbacks=fallbacks
            )
        if unchanged:
            if recorded is not None and recorded.assigned != wanted:  # same GPUs, new request
                write_state(project.directory, wanted, targets, recorded.previous)
            return _result(OK, f"{task.project}: assignments unchanged", fallbacks=fallbacks)
        self._write(project, wanted, targets, before, text)
        recreated, removed = [], []
        async with self.switching.compose_lock:
            for name in changed:
                if not targets[name].here:
                    if name in running:
                        done = await self.switching.podman.remove(running[name].container_id)
                        if done.code != 0:
                            return await self._failed(
                                task.project, f"removing {name} failed: {done.tail()}", fallbacks
                            )
                        removed.append(name)
                elif containers:
                    done = await self.switching.podman.recreate(
                        task.project, project.compose_file, name
                    )
                    if done.code != 0:
                        return await self._failed(
                            task.project, f"recreating {name} failed: {done.tail()}", fallbacks
                        )
                    recreated.append(name)
        after, _ = await self.switching.running(task.project)
        what = f"recreated {', '.join(recreated) or 'nothing'}" + (
            f", removed {', '.join(removed)}" if removed else ""
        )
        where = "" if containers else " (the project does not run: used at its next start)"
        return _result(
            CHANGED,
            f"{task.project}: override written{where}; {what}",
            recreated,
            removed,
            fallbacks,
            after,
        )

    async def _failed(self, name: str, message: str, fallbacks: list[Fallback]) -> pb.TaskResult:
        after, _ = await self.switching.running(name)
        return _result(FAILED, message, fallbacks=fallbacks, project=after)


def _result(
    status: int,
    message: str,
    recreated: Sequence[str] = (),
    removed: Sequence[str] = (),
    fallbacks: Sequence[Fallback] = (),
    project: pb.RunningProject | None = None,
) -> pb.TaskResult:
    if fallbacks:
        message += "; " + describe(fallbacks)
    found = report(fallbacks, recreated, removed, project)
    return pb.TaskResult(status=status, message=message, assignment=found)  # type: ignore[arg-type]
