"""Protobuf <-> assignment domain objects, in one place."""

from __future__ import annotations

from collections.abc import Iterable

from gpufleet.v1 import agent_link_pb2 as link_pb
from gpufleet.v1 import assign_pb2 as pb
from hub.assign.model import Change, NodeOverride, Preview
from hub.convert import timestamp
from hub.ops.running import fallback_lines
from hub.placement import Warning
from hub.store.assignments import Assigned, AssignmentSets


def assignment(a: Assigned) -> pb.Assignment:
    message = pb.Assignment(
        service=a.service, node=a.node, gpus=list(a.gpus), vram_gb=a.vram_gb, strategy=a.strategy
    )
    if a.budget_gb is not None:
        message.vram_budget_gb = a.budget_gb
    return message


def warning(w: Warning) -> pb.PlacementWarning:
    message = pb.PlacementWarning(kind=w.kind, message=w.message, service=w.service, node=w.node)
    if w.gpu is not None:
        message.gpu = w.gpu
    return message


def change(c: Change) -> pb.AssignmentChange:
    message = pb.AssignmentChange(service=c.service, change=c.change)
    if c.before is not None:
        message.before.CopyFrom(assignment(c.before))
    if c.after is not None:
        message.after.CopyFrom(assignment(c.after))
    return message


def preview(p: Preview) -> pb.PreviewAssignmentsResponse:
    by_gpu: dict[tuple[str, int], list[str]] = {}
    for a in p.assigned:
        for index in a.gpus:
            by_gpu.setdefault((a.node, index), []).append(a.service)
    used = p.plan.used_gb()
    message = pb.PreviewAssignmentsResponse(
        configuration=p.configuration,
        strategy=p.strategy,
        assignments=[assignment(a) for a in p.assigned],
        gpus=[
            pb.AssignedGpu(
                node=g.node,
                index=g.index,
                name=g.name,
                memory_total_mb=g.memory_total_mb,
                lost=g.lost,
                services=sorted(by_gpu.get(g.key, [])),
                reserved_gb=round(used.get(g.key, 0.0), 3),
            )
            for g in p.gpus
        ],
        warnings=[warning(w) for w in p.warnings],
        unplaced=[pb.UnplacedService(service=n, reason=r) for n, r in p.plan.unplaced],
        changes=[change(c) for c in p.changes],
    )
    if p.plan.proved_optimal is not None:
        message.proved_optimal = p.plan.proved_optimal
    return message


def assignment_set(s: AssignmentSets) -> pb.AssignmentSet:
    return pb.AssignmentSet(
        configuration=s.configuration,
        strategy=s.strategy,
        applied=timestamp(s.applied),
        current=[assignment(a) for a in s.current],
        previous=[assignment(a) for a in s.previous],
        pins=[assignment(a) for a in s.pins],
    )


def override_task(o: NodeOverride) -> link_pb.ApplyAssignment:
    services = []
    for t in o.services:
        target = link_pb.ServiceAssignment(service=t.service, here=t.here, gpus=list(t.gpus))
        if t.budget_gb is not None:
            target.vram_budget_gb = t.budget_gb
        services.append(target)
    return link_pb.ApplyAssignment(project=o.project, services=services)


def report_lines(report: link_pb.AssignmentReport) -> Iterable[tuple[str, str]]:
    """(step, message) progress events for what the agent did."""
    yield from fallback_lines(report)
    if report.removed:
        yield "remove", "removed (assigned elsewhere): " + ", ".join(report.removed)
    if report.recreated:
        yield "recreate", "recreated: " + ", ".join(report.recreated)
