"""apply_assignment: a GPU override per project, and only the changed services recreated.

The hub sends, for every GPU service of a configuration, whether it runs on this node and on
which GPUs. The agent turns that into `gpu-override.yaml` beside the project's compose file
(agent/overrides.py renders it for the host's GPU runtime; services that run elsewhere get a
profile that is never enabled). The override before it is kept as `gpu-override.previous.yaml`,
with the targets of both in `gpu-assignment.json`. When the project runs, services whose target
changed are recreated alone and those now elsewhere are removed; when one fails or the task is
cancelled, the override and state files are put back as they were, so the same apply sent again
recreates again instead of answering "unchanged". A GPU the probe reports lost
or missing is replaced by another GPU of this node (and again when the project starts).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from agent.convert import report_to_proto
from agent.overrides import (
    STATE_FILE,
    Fallback,
    Target,
    describe,
    fall_back,
    read_state,
    render,
    usable_gpus,
    write_override,
    write_state,
)
from agent.preflight import blocking
from agent.projects import (
    COMPOSE_FILE,
    OVERRIDE_FILE,
    Project,
    ProjectError,
    check_name,
    strip_gpu_devices,
)
from agent.tasks.base import TaskKind
from agent.tasks.context import TaskContext
from agent.tasks.outcome import Outcome, Report, Status
from gpufleet.v1 import agent_link_pb2 as pb

SERVICE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$")
PREVIOUS_FILE = "gpu-override.previous.yaml"
MAX_GPU_INDEX = 1023
KEPT = (OVERRIDE_FILE, PREVIOUS_FILE, STATE_FILE, COMPOSE_FILE)  # what an apply rewrites


@dataclass(frozen=True)
class AssignSpec:
    project: str
    targets: dict[str, Target]  # what the hub asked for, per service


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


def applied(status: Status, message: str, report: Report) -> Outcome[Report]:
    if report.fallbacks:
        message += "; " + describe(report.fallbacks)
    return Outcome(status, message, report)


def snapshot(directory: Path) -> dict[str, bytes | None]:
    return {n: (directory / n).read_bytes() if (directory / n).is_file() else None for n in KEPT}


def restore(directory: Path, saved: dict[str, bytes | None]) -> None:
    """The files as they were before a failed or cancelled apply: a re-sent apply then
    finds the override changed and recreates again, instead of answering `unchanged`."""
    for name, data in saved.items():
        path = directory / name
        if data is None:
            path.unlink(missing_ok=True)
        else:
            temporary = path.with_name(name + ".restore")
            temporary.write_bytes(data)
            os.replace(temporary, path)


def write(ctx: TaskContext, project: Project, spec: AssignSpec, targets: dict[str, Target],
          before: dict[str, Target], text: str) -> None:  # fmt: skip
    """The new override (the old one kept as the previous), its state, and under CDI the
    compose file without the GPU devices the override now names."""
    directory = project.directory
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    override = directory / OVERRIDE_FILE
    if override.is_file():
        os.replace(override, directory / PREVIOUS_FILE)
    write_override(directory, text)
    write_state(directory, spec.targets, targets, before)
    compose = directory / COMPOSE_FILE
    if ctx.store.runtime == "cdi" and compose.is_file():
        document = yaml.safe_load(compose.read_text())
        stripped = strip_gpu_devices(document, set(targets))
        compose.write_text(yaml.safe_dump(stripped, sort_keys=False))


class ApplyAssignment(TaskKind[AssignSpec, Report]):
    kind = "apply_assignment"

    def parse(self, request: pb.TaskRequest) -> AssignSpec:
        task = request.apply_assignment
        return AssignSpec(check_name(task.project), targets_from(task))

    async def run(self, ctx: TaskContext, spec: AssignSpec, check: bool) -> Outcome[Report]:
        name, project = spec.project, ctx.store.project(spec.project)
        targets, found = fall_back(spec.targets, await usable_gpus(ctx.probe))
        fallbacks = tuple(found)
        recorded = read_state(project.directory)
        before = recorded.current if recorded is not None else {}
        text = render(targets, ctx.store.runtime)
        override = project.directory / OVERRIDE_FILE
        unchanged = override.is_file() and override.read_text() == text
        changed = sorted(n for n in targets if before.get(n) != targets[n])
        containers = (await ctx.running(name)).containers
        running = {c.service: c for c in containers}
        if check:
            status = Status.OK if unchanged else Status.CHANGED
            message = f"would recreate {', '.join(changed) or 'nothing'}"
            return applied(status, message, Report(fallbacks=fallbacks))
        if unchanged:
            if recorded is not None and recorded.assigned != spec.targets:  # same GPUs, new ask
                write_state(project.directory, spec.targets, targets, recorded.previous)
            return applied(Status.OK, f"{name}: assignments unchanged", Report(fallbacks=fallbacks))
        refused = ctx.store.refused_on_disk(name) if containers else ""
        if refused:  # the host's policy may have narrowed since the project started
            return applied(Status.FAILED, refused, Report(fallbacks=fallbacks))
        # Compose would fail: say why now.
        if containers and (problems := blocking(await ctx.preflight.problems())):
            message = f"cannot recreate services of {name}: " + "; ".join(problems)
            return applied(Status.FAILED, message, Report(fallbacks=fallbacks))
        saved = snapshot(project.directory)
        write(ctx, project, spec, targets, before, text)
        ctx.watcher.touched(name)  # the services it runs here may have changed
        recreated: list[str] = []
        removed: list[str] = []
        failure = ""
        finished = False  # every recreate and removal succeeded: the override is current
        try:
            async with ctx.compose_lock:
                for done_count, service in enumerate(changed):
                    percent = 100.0 * done_count / len(changed)
                    if not targets[service].here:
                        if service in running:
                            ctx.progress("remove", f"removing {service}", percent)
                            done = await ctx.podman.remove(running[service].container_id)
                            if done.code != 0:
                                failure = f"removing {service} failed: {done.tail()}"
                                break
                            removed.append(service)
                    elif containers:
                        ctx.progress("recreate", f"recreating {service}", percent)
                        done = await ctx.podman.recreate(name, project.compose_file, service)
                        if done.code != 0:
                            failure = f"recreating {service} failed: {done.tail()}"
                            ctx.preflight.stale()  # the host may have changed: check again
                            break
                        recreated.append(service)
                finished = not failure
        finally:
            if not finished:  # failed or cancelled: back to what was current before
                restore(project.directory, saved)
                ctx.watcher.touched(name)
        if failure:
            return await self._failed(ctx, name, failure, fallbacks)
        after = await ctx.running(name)
        what = f"recreated {', '.join(recreated) or 'nothing'}" + (
            f", removed {', '.join(removed)}" if removed else ""
        )
        where = "" if containers else " (the project does not run: used at its next start)"
        report = Report(after, fallbacks, tuple(recreated), tuple(removed))
        return applied(Status.CHANGED, f"{name}: override written{where}; {what}", report)

    @staticmethod
    async def _failed(
        ctx: TaskContext, name: str, message: str, fallbacks: tuple[Fallback, ...]
    ) -> Outcome[Report]:
        return applied(Status.FAILED, message, Report(await ctx.running(name), fallbacks))

    def fill(self, result: pb.TaskResult, data: Report) -> None:
        result.assignment.CopyFrom(report_to_proto(data))

    async def cancelled(self, ctx: TaskContext, spec: AssignSpec) -> Report:
        return Report(await ctx.running(spec.project))
