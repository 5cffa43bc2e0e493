"""Assignments from the cluster's state: plan, difference, and each node's override.

Pure functions over what the service read from the database and the configuration, so they are
tested without a hub. A configuration's services are placed once over the GPUs of the chosen
nodes; a node runs the services assigned to it, and leaves the others out of its project.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from hub import limits
from hub.assign.model import AssignError, Change, NodeOverride, Preview, ServiceTarget
from hub.configs import Configuration
from hub.placement import STRATEGIES, GpuSlot, Pin, Plan, ServiceDemand, Warning, plan, speed_score
from hub.placement.engine import gpu_label
from hub.placement.optimal import OptimalUnavailable
from hub.store.assignments import Assigned, AssignmentSets
from hub.store.store import PlacementGpu

SPEED_LABEL = "gpu-speed"  # a node label that overrides its GPUs' speed score


def slots(gpus: Iterable[PlacementGpu]) -> list[GpuSlot]:
    found = []
    for gpu in gpus:
        label = gpu.labels.get(SPEED_LABEL)
        try:
            override = float(label) if label is not None else None
        except ValueError:
            override = None
        speed = speed_score(gpu.name, gpu.compute_capability, gpu.memory_total_mb, override)
        found.append(
            GpuSlot(gpu.node, gpu.index, gpu.name, gpu.memory_total_mb, speed,
                    gpu.state == "lost", gpu.foreign_mb)
        )  # fmt: skip
    return found


def demands(config: Configuration) -> list[ServiceDemand]:
    """Services that use GPUs (gpu_count 0 runs on CPU and is not assigned)."""
    return [
        ServiceDemand(
            s.name, s.vram_gb, s.gpu_count, s.latency_class, s.isolation, s.vram_budget_min_gb
        )
        for s in config.services
        if s.gpu_count > 0
    ]


def pins_for(sets: AssignmentSets, strategy: str, services: Sequence[ServiceDemand]) -> list[Pin]:
    """The operator's pins; with `manual`, what is in force also stays where it is."""
    names = {s.name for s in services}
    chosen = {p.service: p for p in sets.pins if p.service in names}
    if strategy == "manual":
        for a in sets.current:
            if a.service in names:
                chosen.setdefault(a.service, a)
    return [Pin(a.service, a.node, a.gpus, a.budget_gb) for a in chosen.values()]


def lost_moved(
    current: Sequence[Assigned], gpus: Sequence[GpuSlot], pinned: set[str]
) -> list[Warning]:
    """Services in force on a GPU that is now lost, which the plan places afresh."""
    lost = {g.key for g in gpus if g.lost}
    warnings = []
    for a in current:
        gone = [i for i in a.gpus if (a.node, i) in lost]
        if gone and a.service not in pinned:
            warnings.append(
                Warning(
                    "gpu_lost_moved",
                    f"{a.service} is assigned to {gpu_label(gone)} on {a.node}, which is lost; "
                    "placed afresh",
                    a.service,
                    a.node,
                    gone[0],
                )
            )
    return warnings


def assigned(result: Plan, strategy: str) -> tuple[Assigned, ...]:
    return tuple(
        Assigned(p.service, p.node, p.gpus, round(p.vram_gb, 3), p.budget_gb, strategy)
        for p in result.placements
    )


def _where(a: Assigned) -> tuple[str, tuple[int, ...]]:
    return a.node, a.gpus


def diff(before: Sequence[Assigned], after: Sequence[Assigned]) -> list[Change]:
    old = {a.service: a for a in before}
    new = {a.service: a for a in after}
    changes = []
    for name in sorted(old.keys() | new.keys()):
        b, a = old.get(name), new.get(name)
        if b is None:
            changes.append(Change(name, "added", None, a))
        elif a is None:
            changes.append(Change(name, "removed", b, None))
        elif _where(a) != _where(b):
            changes.append(Change(name, "moved", b, a))
        elif a.budget_gb != b.budget_gb:
            changes.append(Change(name, "budget", b, a))
    return changes


def preview(
    config: Configuration,
    strategy: str,
    gpus: Sequence[GpuSlot],
    sets: AssignmentSets,
    time_limit_s: float = 0.0,
    overcommit: bool = True,
) -> Preview:
    """The plan (over-commit: warn but allow; False: strict) and its difference from what is
    in force."""
    if strategy not in STRATEGIES:
        raise AssignError(
            "invalid", f"unknown strategy {strategy!r}: use one of {', '.join(STRATEGIES)}"
        )
    services = demands(config)
    pins = pins_for(sets, strategy, services)
    try:
        result = plan(strategy, gpus, services, pins, time_limit_s or 10.0, overcommit)
    except OptimalUnavailable as exc:
        raise AssignError("unavailable", str(exc)) from None
    except ValueError as exc:
        raise AssignError("invalid", f"{config.name}: {exc}") from None
    now = assigned(result, strategy)
    extra = lost_moved(sets.current, gpus, {p.service for p in pins})
    return Preview(
        config.name,
        strategy,
        result,
        now,
        tuple(sorted(gpus, key=lambda g: g.key)),
        result.warnings + tuple(extra),
        tuple(diff(sets.current, now)),
    )


def overrides(
    config: Configuration, assignments: Sequence[Assigned], nodes: Iterable[str]
) -> list[NodeOverride]:
    """Each node's part: every GPU service of the configuration, here or not."""
    by_service = {a.service: a for a in assignments}
    found = []
    for node in sorted(set(nodes)):
        targets = []
        for s in demands(config):
            a = by_service.get(s.name)
            if a is not None and a.node == node:
                targets.append(ServiceTarget(s.name, True, a.gpus, a.budget_gb))
            else:
                targets.append(ServiceTarget(s.name, False))
        found.append(NodeOverride(node, config.name, tuple(targets)))
    return found


def check_pin(
    config: Configuration,
    service: str,
    node: str,
    gpus: Sequence[int],
    node_gpus: Sequence[int],
    budget: float | None,
) -> ServiceDemand:
    """An impossible pin is refused with the fix; one over capacity is only warned."""
    found = {s.name: s for s in demands(config)}
    if service not in found:
        known = ", ".join(sorted(found)) or "none"
        raise AssignError(
            "not_found",
            f"configuration {config.name} has no GPU service "
            f"{service!r}; its GPU services: {known}",
        )
    s = found[service]
    if not gpus:
        raise AssignError("invalid", f"name the GPU(s) for {service}: --gpu INDEX")
    missing = [i for i in gpus if i not in node_gpus]
    if missing:
        have = ", ".join(map(str, sorted(node_gpus))) or "none"
        raise AssignError(
            "invalid",
            f"node {node} has no GPU {', '.join(map(str, missing))} "
            f"(its GPUs: {have}): `hubctl nodes show {node}`",
        )
    if len(set(gpus)) != len(gpus):
        raise AssignError("invalid", f"GPU indices repeat in {list(gpus)}: name each GPU once")
    if len(gpus) != s.gpu_count:
        raise AssignError(
            "invalid",
            f"{service} needs {s.gpu_count} GPU(s) on one node, got "
            f"{len(gpus)}: pass --gpu {s.gpu_count} times",
        )
    if budget is not None and limits.budget_problem(budget):
        raise AssignError("invalid", str(limits.budget_problem(budget)))
    return s
