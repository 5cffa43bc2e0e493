"""Whether a node's GPUs can hold a configuration: the warnings of `switch --check`.

Pure: what a node has (its GPUs as the hub last heard them) and what the configuration asks
(each GPU service's VRAM per GPU x gpu_count) go in, one line per problem comes out. Warnings
inform and never block, like the assignment warnings (hub/placement), whose units and wording
they share: vram_gb is GiB per GPU, written "GB", capacities to one decimal.

With assignments in force for the configuration, a node runs only the GPU services assigned to
it, on the GPUs they are assigned to (at their VRAM budget when one was set); without, it runs
every service of the configuration on GPUs of its own choosing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hub.configs import Configuration
from hub.placement.engine import fmt_gb, gpu_label, to_mib
from hub.placement.model import MIB_PER_GIB
from hub.store.assignments import Assigned
from hub.store.store import PlacementGpu


@dataclass(frozen=True)
class NodeGpu:
    """A GPU as a capacity check sees it: `foreign_mb` is VRAM held by processes gpufleet
    did not start (placement's PlacementGpu.foreign_mb); what is left is its usable size."""

    index: int
    memory_total_mb: int
    lost: bool = False
    foreign_mb: int = 0

    @property
    def usable_mb(self) -> int:
        return max(self.memory_total_mb - max(self.foreign_mb, 0), 0)

    @property
    def gb(self) -> float:
        return self.usable_mb / MIB_PER_GIB


def node_gpu(gpu: PlacementGpu) -> NodeGpu:
    """The store's GPU (as placement sees it) for a capacity check."""
    return NodeGpu(gpu.index, gpu.memory_total_mb, gpu.state == "lost", gpu.foreign_mb)


@dataclass(frozen=True)
class Demand:
    """One GPU service as a node would run it; `gpus` are the assigned ones (empty: any)."""

    service: str
    vram_gb: float
    gpu_count: int
    gpus: tuple[int, ...] = ()


def demands(config: Configuration, node: str, assigned: Sequence[Assigned]) -> list[Demand]:
    """What the node would run of `config`, given the assignments in force (may be none)."""
    gpu_services = [s for s in config.services if s.gpu_count > 0]
    if not assigned:
        return [Demand(s.name, s.vram_gb, s.gpu_count) for s in gpu_services]
    here = {a.service: a for a in assigned if a.node == node}
    found = []
    for s in gpu_services:
        a = here.get(s.name)
        if a is not None:
            vram = a.budget_gb if a.budget_gb is not None else s.vram_gb
            found.append(Demand(s.name, vram, s.gpu_count, a.gpus))
    return found


def _size(gpu: NodeGpu) -> str:
    """'24 GB', or '14 GB (other processes hold 10 of 24 GB)'."""
    if gpu.foreign_mb <= 0:
        return f"{fmt_gb(gpu.gb)} GB"
    other = fmt_gb(min(gpu.foreign_mb, gpu.memory_total_mb) / MIB_PER_GIB)
    total = fmt_gb(gpu.memory_total_mb / MIB_PER_GIB)
    return f"{fmt_gb(gpu.gb)} GB (other processes hold {other} of {total} GB)"


def _gb(gpu: NodeGpu) -> str:
    return f"GPU {gpu.index}: {_size(gpu)}"


def _listing(gpus: Sequence[NodeGpu]) -> str:
    return ", ".join(_gb(g) for g in gpus)


def _need(d: Demand) -> str:
    if d.gpu_count == 1:
        return f"{d.service} needs {fmt_gb(d.vram_gb, 2)} GB on one GPU"
    return f"{d.service} needs {d.gpu_count} GPUs with {fmt_gb(d.vram_gb, 2)} GB each"


def _unassigned(node: str, gpus: Sequence[NodeGpu], d: Demand) -> str | None:
    """The node picks the GPUs: are there gpu_count of them, each large enough?"""
    usable = [g for g in gpus if not g.lost]
    if not usable:
        if gpus:
            return (
                f"{_need(d)}; {node} has no usable GPU ({gpu_label([g.index for g in gpus])} lost)"
            )
        return f"{_need(d)}; {node} has no GPUs"
    if len(usable) < d.gpu_count:
        count = f"{len(usable)} GPU{'s' if len(usable) > 1 else ''}"
        return f"{_need(d)}; {node} has {count} ({_listing(usable)})"
    large = [g for g in usable if g.usable_mb >= to_mib(d.vram_gb)]
    if len(large) >= d.gpu_count:
        return None
    if d.gpu_count == 1:
        top = max(usable, key=lambda g: (g.usable_mb, -g.index))
        return f"{_need(d)}; the largest GPU of {node} has {_size(top)} (GPU {top.index})"
    have = f"{len(large)}" if large else "none"
    return (
        f"{_need(d)}; {node} has {have} with {fmt_gb(d.vram_gb, 2)} GB or more ({_listing(usable)})"
    )


def _assigned(node: str, by_index: dict[int, NodeGpu], d: Demand) -> str | None:
    """The assignment picked the GPUs: are they there, and large enough?"""
    where = f"{gpu_label(d.gpus)} of {node}"
    missing = [i for i in d.gpus if i not in by_index]
    if missing:
        have = ", ".join(map(str, sorted(by_index))) or "none"
        return (
            f"{d.service} is assigned to {where}; {node} has no {gpu_label(missing)}"
            f" (its GPUs: {have}): `hubctl assign preview` places it afresh"
        )
    lost = [i for i in d.gpus if by_index[i].lost]
    if lost:
        return f"{d.service} is assigned to {where}; {gpu_label(lost)} is lost"
    small = [by_index[i] for i in d.gpus if by_index[i].usable_mb < to_mib(d.vram_gb)]
    if small:
        return (
            f"{d.service} needs {fmt_gb(d.vram_gb, 2)} GB on each of {where};"
            f" {', '.join(_gb(g) for g in small)}"
        )
    return None


def _overcommit(node: str, gpus: Sequence[NodeGpu], found: Sequence[Demand]) -> list[str]:
    """Services that fit one by one but not all together."""
    usable = [g for g in gpus if not g.lost]
    by_index = {g.index: g for g in usable}
    lines = []
    per_gpu: dict[int, list[Demand]] = {}
    for d in found:
        for i in d.gpus:
            per_gpu.setdefault(i, []).append(d)
    for index, on in sorted(per_gpu.items()):
        total = sum(d.vram_gb for d in on)
        gpu = by_index.get(index)
        if gpu is not None and len(on) > 1 and to_mib(total) > gpu.usable_mb:
            names = ", ".join(f"{d.service} {fmt_gb(d.vram_gb, 2)}" for d in on)
            lines.append(
                f"the services assigned to GPU {index} of {node} need {fmt_gb(total, 2)} GB"
                f" together ({names}); it has {_size(gpu)}"
            )
    free = [d for d in found if not d.gpus]
    total = sum(d.vram_gb * d.gpu_count for d in free)
    capacity = sum(g.usable_mb for g in usable)
    if len(free) > 1 and to_mib(total) > capacity:
        names = ", ".join(f"{d.service} {fmt_gb(d.vram_gb * d.gpu_count, 2)}" for d in free)
        lines.append(
            f"the services need {fmt_gb(total, 2)} GB together ({names}); the GPUs of {node}"
            f" have {fmt_gb(capacity / MIB_PER_GIB)} GB ({_listing(usable)})"
        )
    return lines


def warnings(node: str, gpus: Sequence[NodeGpu], found: Sequence[Demand]) -> list[str]:
    """One line per capacity problem of `node` running `found`; none when it all fits."""
    by_index = {g.index: g for g in gpus}
    lines = []
    for d in found:
        line = _assigned(node, by_index, d) if d.gpus else _unassigned(node, gpus, d)
        if line is not None:
            lines.append(line)
    if not lines:  # each fits alone: do they fit together?
        lines = _overcommit(node, gpus, found)
    return lines


def check(
    config: Configuration, node: str, gpus: Sequence[NodeGpu], assigned: Sequence[Assigned]
) -> list[str]:
    """The capacity warnings of switching `node` to `config`."""
    return warnings(node, gpus, demands(config, node, assigned))
