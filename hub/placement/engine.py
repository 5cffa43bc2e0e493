"""Book-keeping shared by the strategies: VRAM in integer MiB, pins, pools, final warnings.

Demands are rounded up to whole MiB so that "fits" here always implies "fits" in GiB floats.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence

from .model import (
    LATENCY_CLASSES,
    MIB_PER_GIB,
    GpuSlot,
    Pin,
    Placement,
    Plan,
    ServiceDemand,
    Warning,
)
from .wording import capacity, capacity_warnings, fmt_free, fmt_gb, gpu_label, to_mib

__all__ = ["BLOCKED", "BUDGET_STEP_MIB", "Pool", "State", "fmt_free", "fmt_gb", "gpu_label",
           "to_mib", "validate"]  # fmt: skip

BUDGET_STEP_MIB = 512  # adjusted budgets are whole 0.5 GB steps (the seed's 3.5 GB on a 4 GB card)
BLOCKED = -(1 << 60)  # free VRAM of a GPU closed to further services (isolation)


def validate(
    gpus: Sequence[GpuSlot], services: Sequence[ServiceDemand], pins: Sequence[Pin]
) -> None:
    if len({g.key for g in gpus}) != len(gpus):
        raise ValueError("duplicate GPU (node, index)")
    names = {s.name for s in services}
    if len(names) != len(services):
        raise ValueError("duplicate service name")
    for s in services:
        if s.gpu_count < 1 or s.vram_gb < 0 or (s.min_gb is not None and s.min_gb < 0):
            raise ValueError(f"{s.name}: invalid demand")
        if s.latency_class not in LATENCY_CLASSES:
            raise ValueError(f"{s.name}: latency_class must be one of {', '.join(LATENCY_CLASSES)}")
    if len({p.service for p in pins}) != len(pins):
        raise ValueError("more than one pin for a service")
    for p in pins:
        if p.service not in names:
            raise ValueError(f"pin for unknown service {p.service!r}")
        if not p.gpus or len(set(p.gpus)) != len(p.gpus):
            raise ValueError(f"pin for {p.service}: needs distinct GPU indices")


class State:
    """Per GPU (by position): ``size`` its memory, ``foreign`` what processes gpufleet did not
    start hold, ``total`` the rest (its usable size), ``used`` what the plan reserves, ``free``
    what is left of ``total``, and ``want`` what would be left if every service had its full
    estimate (an auto-adjusted budget counts at the size it gave up): over-commit goes where
    ``want`` is highest. All MiB. ``overcommit`` False is strict mode: never past ``free``."""

    def __init__(self, gpus: Iterable[GpuSlot], overcommit: bool = True) -> None:
        self.gpus = sorted(gpus, key=lambda g: g.key)
        self.overcommit = overcommit
        self.ids = {g.key: i for i, g in enumerate(self.gpus)}
        self.size = [g.memory_total_mb for g in self.gpus]
        self.foreign = [g.memory_total_mb - g.usable_mb for g in self.gpus]
        self.total = [g.usable_mb for g in self.gpus]
        self.used = [0] * len(self.gpus)
        self.free = list(self.total)
        self.want = list(self.total)
        self.blocked: set[int] = set()
        self.placements: list[Placement] = []
        self.demands: dict[str, ServiceDemand] = {}
        self.unplaced: list[tuple[str, str]] = []
        self.warnings: list[Warning] = []

    def usable(self) -> list[int]:
        return [i for i, g in enumerate(self.gpus) if not g.lost and i not in self.blocked]

    def block(self, ids: Iterable[int]) -> None:
        for i in ids:
            self.blocked.add(i)
            self.free[i] = self.want[i] = BLOCKED

    def budget_for(self, s: ServiceDemand, free_mib: int) -> tuple[float, int] | None:
        """Largest budget (GiB, MiB) <= vram_gb and >= min_gb that fits free_mib, if any."""
        if s.min_gb is None or to_mib(s.min_gb) > free_mib:
            return None
        step = min(free_mib, to_mib(s.vram_gb)) // BUDGET_STEP_MIB * BUDGET_STEP_MIB
        if step >= to_mib(s.min_gb) and step / MIB_PER_GIB <= s.vram_gb:
            return step / MIB_PER_GIB, step
        return s.min_gb, to_mib(s.min_gb)

    def reserve(
        self, s: ServiceDemand, ids: Sequence[int], vram: float, budget: float | None
    ) -> Placement:
        mib = to_mib(vram)
        wanted = max(mib, to_mib(s.vram_gb))
        for i in ids:
            self.used[i] += mib
            if i not in self.blocked:
                self.free[i] -= mib
                self.want[i] -= wanted
        node = self.gpus[ids[0]].node
        placement = Placement(s.name, node, tuple(self.gpus[i].index for i in ids), vram, budget)
        self.placements.append(placement)
        self.demands[s.name] = s
        return placement

    def warn_adjusted(self, s: ServiceDemand, ids: Sequence[int], budget: float) -> None:
        g = self.gpus[ids[0]]
        label = gpu_label([self.gpus[i].index for i in ids])
        i = min(ids, key=lambda x: self.total[x])
        if to_mib(s.vram_gb) > self.total[i]:
            why = f"exceeds {label} ({capacity(self, i)})"
        else:
            why = f"does not fit the free VRAM of {label} ({capacity(self, i)})"
        self.warnings.append(
            Warning(
                "auto_adjusted",
                f"{s.name} VRAM budget ({fmt_gb(s.vram_gb, 2)} GB) {why} on {g.node}; "
                f"auto-adjusted to {fmt_gb(budget, 2)} GB",
                s.name,
                g.node,
                g.index,
            )
        )

    def apply_pins(self, pins: Sequence[Pin], by_name: dict[str, ServiceDemand]) -> set[str]:
        """Place pins exactly as given; returns the services whose pin names a lost GPU."""
        moved: set[str] = set()
        for pin in sorted(pins, key=lambda p: p.service):
            s = by_name[pin.service]
            ids = [self.ids.get((pin.node, i)) for i in pin.gpus]
            good = [i for i in ids if i is not None and not self.gpus[i].lost]
            if len(good) != len(ids):
                moved.add(s.name)
                gone = [x for x, i in zip(pin.gpus, ids, strict=True) if i is None or i not in good]
                self.warnings.append(
                    Warning(
                        "gpu_lost_moved",
                        f"{s.name} is pinned to {gpu_label(gone)} on {pin.node}, which is lost "
                        "or missing; placed by the strategy instead",
                        s.name,
                        pin.node,
                        gone[0],
                    )
                )
                continue
            free = min(self.free[i] for i in good)
            vram, budget, adjusted = s.vram_gb, pin.vram_budget_gb, False
            if budget is not None:
                vram = budget
                adjusted = budget < s.vram_gb and to_mib(s.vram_gb) > free
            elif to_mib(s.vram_gb) > free and (fit := self.budget_for(s, free)) is not None:
                vram = budget = fit[0]
                adjusted = True
            self.reserve(s, good, vram, budget)
            if adjusted and budget is not None:
                self.warn_adjusted(s, good, budget)
        return moved

    def finish(self) -> Plan:
        self.warnings += capacity_warnings(self)
        for name, reason in self.unplaced:
            self.warnings.append(Warning("unplaced", f"{name} not placed: {reason}", name))
        return Plan(
            tuple(sorted(self.placements, key=lambda p: p.service)),
            tuple(sorted(self.unplaced)),
            tuple(
                sorted(
                    self.warnings,
                    key=lambda w: (w.service, w.node, -1 if w.gpu is None else w.gpu, w.kind),
                )
            ),
        )


class Pool:
    """Lazy max-heap of units (one GPU, or a node's GPUs) keyed by their k-th largest free VRAM.

    Free VRAM only ever shrinks, so a stored key is an upper bound: when the top's key is stale it
    is re-pushed with the true value, and a top whose key is current is the true maximum. Ties go
    to the lower rank (units are ranked by node name, then GPU index).
    """

    def __init__(self, free: list[int], units: Sequence[tuple[int, tuple[int, ...]]], k: int):
        self.free, self.k = free, k
        self.units = dict(units)
        self.heap = [(-self.kth(rank), rank) for rank, _ in units]
        heapq.heapify(self.heap)

    def best(self, rank: int) -> list[int]:
        free = self.free
        return sorted(self.units[rank], key=lambda g: (-free[g], g))[: self.k]

    def kth(self, rank: int) -> int:
        return self.free[self.best(rank)[-1]]

    def top(self) -> tuple[int, int] | None:
        """(k-th largest free MiB, rank) of the unit with the most free VRAM."""
        heap = self.heap
        while heap:
            neg, rank = heap[0]
            actual = self.kth(rank)
            if actual == -neg:
                return actual, rank
            heapq.heapreplace(heap, (-actual, rank))
        return None
