"""drain: poll each service's in-flight metric until nothing is in flight or the timeout
passes; a timeout is reported, and is not a failure (the switch goes on)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from agent import probing
from agent.probing import Probe
from agent.projects import check_name, expand
from agent.tasks.base import ProjectKind
from agent.tasks.context import Running, TaskContext
from agent.tasks.outcome import Outcome, Status, counted
from gpufleet.v1 import agent_link_pb2 as pb


@dataclass(frozen=True)
class DrainSpec:
    project: str
    probes: tuple[Probe, ...]  # URLs as the hub sent them, ${VAR} not yet expanded
    timeout_s: float


class Drain(ProjectKind[DrainSpec]):
    kind = "drain"

    def parse(self, request: pb.TaskRequest) -> DrainSpec:
        task = request.drain
        probes = tuple(Probe(p.service, p.url, p.metric) for p in task.probes)
        timeout = task.timeout.ToTimedelta().total_seconds() or 120.0
        return DrainSpec(check_name(task.project), probes, timeout)

    async def run(self, ctx: TaskContext, spec: DrainSpec, check: bool) -> Outcome[Running]:
        if check:
            return Outcome(Status.CHANGED, f"would drain {spec.project}")
        probes = [replace(p, url=expand(p.url, ctx.env)) for p in spec.probes]
        ctx.progress("drain", f"draining {spec.project}: {counted(len(probes), 'service')} to poll")
        outcome = await probing.drain(
            probes, spec.timeout_s, progress=lambda line: ctx.progress("drain", line)
        )
        if outcome.drained:
            return Outcome(Status.CHANGED, f"drained after {outcome.waited_s:.1f} s")
        return Outcome(Status.CHANGED, f"drain timed out after {outcome.waited_s:.0f} s with "
                                       f"{outcome.detail}; proceeding")  # fmt: skip
