"""What placement says: amounts, a GPU's state, why a service did not fit, capacity warnings.

"GB" in every message is the unit of ``vram_gb``: GiB (1024 MiB). "Used" on a GPU is what the
plan reserves there plus what processes gpufleet did not start hold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .model import MIB_PER_GIB, ServiceDemand, Warning

if TYPE_CHECKING:
    from .engine import State

SHOWN_MIB = 103  # foreign VRAM from 0.1 GB (what one decimal shows) on is mentioned
FOREIGN = "processes gpufleet did not start"


def to_mib(gb: float) -> int:
    return max(0, math.ceil(gb * MIB_PER_GIB - 1e-6))


def fmt_gb(gb: float, digits: int = 1) -> str:
    """Capacities: one decimal (24564 MiB -> "24"); demands: two (0.65); trailing zeros dropped."""
    text = f"{gb:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def gib(mib: int) -> str:
    return fmt_gb(mib / MIB_PER_GIB)


def fmt_free(mib: int) -> str:
    """Free VRAM, rounded down so it is never overstated."""
    return fmt_gb(math.floor(max(mib, 0) / MIB_PER_GIB * 10) / 10)


def gpu_label(gpus: Sequence[int]) -> str:
    return f"GPU {gpus[0]}" if len(gpus) == 1 else "GPUs " + ",".join(map(str, gpus))


def demand(s: ServiceDemand) -> str:
    extra = f" (at least {fmt_gb(s.min_gb, 2)} GB)" if s.min_gb is not None else ""
    return f"{fmt_gb(s.vram_gb, 2)} GB{extra}"


def capacity(state: State, i: int) -> str:
    """A GPU's usable size: "24 GB", or "5.1 GB usable of 24 GB" when others hold some."""
    if state.foreign[i] < SHOWN_MIB:
        return f"{gib(state.total[i])} GB"
    return f"{gib(state.total[i])} GB usable of {gib(state.size[i])} GB"


def describe(state: State, ids: Sequence[int], one_node: bool) -> str:
    """ "GPU 0, 18.9 of 24 GB used" (the node too when the GPUs span several)."""
    g = state.gpus[ids[0]]
    label = gpu_label([state.gpus[i].index for i in ids])
    name = label if one_node else f"{g.node} {label}"
    i = min(ids, key=lambda x: state.free[x])
    used = gib(state.used[i] + state.foreign[i])
    text = f"{name}, {used} of {gib(state.size[i])} GB used"
    if state.foreign[i] >= SHOWN_MIB:
        text += f", {gib(state.foreign[i])} GB of it by {FOREIGN}"
    return text


def _of(state: State, ids: Sequence[int]) -> tuple[str, bool]:
    nodes = {state.gpus[i].node for i in ids}
    return (f" of {next(iter(nodes))}", True) if len(nodes) == 1 else ("", False)


def short(state: State, s: ServiceDemand, considered: Sequence[int], best: Sequence[int]) -> str:
    """Why s does not fit: "needs 72 GB free on one GPU; the most free on any GPU of gpu-c is
    5.1 GB (GPU 0, 18.9 of 24 GB used)". `best`: the GPUs with the most free room."""
    of, one_node = _of(state, considered)
    free = fmt_free(min(state.free[i] for i in best))
    where = describe(state, best, one_node)
    if s.gpu_count == 1:
        return (
            f"needs {demand(s)} free on one GPU; the most free on any GPU{of} is {free} GB "
            f"({where})"
        )
    return (
        f"needs {s.gpu_count} GPUs on one node with {demand(s)} free each; the most free on "
        f"{s.gpu_count} GPUs of one node is {free} GB each ({where})"
    )


def too_large(state: State, s: ServiceDemand, considered: Sequence[int], largest: int) -> str:
    """Why s is not placed even over capacity: it exceeds every GPU's usable size."""
    of, one_node = _of(state, considered)
    where = describe(state, [largest], one_node)
    if s.gpu_count == 1:
        return (
            f"needs {demand(s)} on one GPU, more than any GPU{of} holds; the largest is "
            f"{capacity(state, largest)} ({where})"
        )
    return (
        f"needs {s.gpu_count} GPUs on one node with {demand(s)} each, more than any node's GPUs "
        f"hold; the largest {s.gpu_count} of one node have {capacity(state, largest)} each"
    )


def no_gpu(s: ServiceDemand) -> str:
    where = "on one GPU" if s.gpu_count == 1 else f"on {s.gpu_count} GPUs of one node"
    return f"needs {demand(s)} free {where}; no usable GPU" + ("" if s.gpu_count == 1 else "s")


def after_all(state: State, s: ServiceDemand, usable: Sequence[int]) -> str:
    """Why s is out of a finished plan (the most free GPU stands for a node's GPUs)."""
    if not usable:
        return no_gpu(s)
    floor = to_mib(s.min_gb if s.min_gb is not None else s.vram_gb)
    if state.overcommit and max(state.total[i] for i in usable) < floor:
        largest = max(usable, key=lambda i: (state.total[i], state.free[i], -i))
        return too_large(state, s, usable, largest)
    return short(state, s, usable, [max(usable, key=lambda i: (state.free[i], -i))])


def capacity_warnings(state: State) -> list[Warning]:
    """Services larger than their GPU, GPUs over capacity, GPUs partly held by others."""
    found = []
    for p in state.placements:
        s = state.demands[p.service]
        for index in p.gpus:
            i = state.ids[(p.node, index)]
            if to_mib(p.vram_gb) <= state.total[i]:
                continue
            have, need = capacity(state, i), fmt_gb(p.vram_gb, 2)
            if s.adjustable or p.budget_gb is not None:
                kind = "budget_over_capacity"
                text = f"{s.name} budget ({need} GB) exceeds GPU {index} ({have})"
            else:
                kind = "large_model_small_gpu"
                text = f"{s.name} requires ~{need} GB, GPU {index} only has {have}"
            found.append(Warning(kind, f"{text} on {p.node}", s.name, p.node, index))
    for i, g in enumerate(state.gpus):
        foreign = state.foreign[i]
        held = f", {gib(foreign)} GB of it held by {FOREIGN}" if foreign >= SHOWN_MIB else ""
        if state.used[i] > state.total[i]:
            found.append(
                Warning(
                    "combined_over_capacity",
                    f"Combined VRAM (~{gib(state.used[i] + foreign)} GB{held}) exceeds "
                    f"GPU {g.index} capacity ({gib(state.size[i])} GB) on {g.node}",
                    node=g.node,
                    gpu=g.index,
                )
            )
        if foreign >= SHOWN_MIB and not g.lost:
            found.append(
                Warning(
                    "foreign_vram",
                    f"GPU {g.index} on {g.node}: {gib(foreign)} of {gib(state.size[i])} GB held "
                    f"by {FOREIGN}; placement uses the other {gib(state.total[i])} GB",
                    node=g.node,
                    gpu=g.index,
                )
            )
    return found
