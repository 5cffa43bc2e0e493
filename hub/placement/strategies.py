"""The five assignment strategies of the multi-GPU design, and `plan()`.

Shared rules: pins are placed first, exactly as given (warned, never refused); a pin naming a lost
or missing GPU is placed by the strategy instead (``manual`` uses ``vram_based`` for those) and
warned ``gpu_lost_moved``. Services are then placed one by one; one that does not fit at full size
but has an adjustable budget goes to the GPU (or node) with the most free VRAM at the largest
0.5 GB step that fits, never below ``min_gb``. Lost GPUs are never used.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import replace
from typing import cast

from .engine import BLOCKED, Pool, State, fmt_free, fmt_gb, to_mib, validate
from .improve import improve
from .model import LATENCY_CLASSES, GpuSlot, Pin, Plan, ServiceDemand

STRATEGIES = (
    "manual", "vram_based", "latency_optimized", "isolation_first", "balanced", "optimal",
)  # fmt: skip
OPTIMAL_LIMIT_S = 10.0

Choice = tuple[Pool, int]
GroupKey = Callable[[State, tuple[int, ...]], Hashable]


class Placer:
    """Pools over a fixed set of GPUs, built per GPU count and split into groups."""

    def __init__(self, state: State, ids: Sequence[int], group: GroupKey | None = None) -> None:
        self.state, self.ids, self.group = state, sorted(ids), group
        self._pools: dict[int, list[tuple[Hashable, Pool]]] = {}

    def groups(self, k: int) -> list[tuple[Hashable, Pool]]:
        if k not in self._pools:
            if k == 1:
                units: list[tuple[int, tuple[int, ...]]] = [(i, (i,)) for i in self.ids]
            else:
                by_node: dict[str, list[int]] = {}
                for i in self.ids:
                    by_node.setdefault(self.state.gpus[i].node, []).append(i)
                units = [(g[0], tuple(g)) for g in by_node.values() if len(g) >= k]
            parts: dict[Hashable, list[tuple[int, tuple[int, ...]]]] = {}
            for rank, gpus in units:
                key = self.group(self.state, gpus) if self.group else 0
                parts.setdefault(key, []).append((rank, gpus))
            self._pools[k] = [(key, Pool(self.state.free, parts[key], k)) for key in parts]
        return self._pools[k]

    def most_free(self, k: int) -> tuple[int, Pool, int] | None:
        best: tuple[int, Pool, int] | None = None
        for _, pool in self.groups(k):
            top = pool.top()
            if top and (best is None or (top[0], -top[1]) > (best[0], -best[2])):
                best = (top[0], pool, top[1])
        return best

    def place(
        self, s: ServiceDemand, choose: Callable[[int, int], Choice | None] | None = None
    ) -> list[int] | None:
        """Place s (the chooser's pick, else the most free unit); returns its GPU ids."""
        state, k, need = self.state, s.gpu_count, to_mib(s.vram_gb)
        choice = choose(k, need) if choose else None
        top = self.most_free(k)
        if choose is None and top and top[0] >= need:
            choice = (top[1], top[2])
        if choice:
            ids = sorted(choice[0].best(choice[1]))
            state.reserve(s, ids, s.vram_gb, None)
            return ids
        if top and (fit := state.budget_for(s, top[0])) is not None:
            ids = sorted(top[1].best(top[2]))
            state.reserve(s, ids, fit[0], fit[0])
            state.warn_adjusted(s, ids, fit[0])
            return ids
        want = f"{fmt_gb(s.vram_gb, 2)} GB" + (
            f" (at least {fmt_gb(s.min_gb, 2)} GB)" if s.min_gb is not None else ""
        )
        where = "on one GPU" if k == 1 else f"on {k} GPUs of one node"
        if top is None or top[0] <= BLOCKED // 2:
            reason = f"needs {want} free {where}; no usable GPU" + ("" if k == 1 else "s")
        elif k == 1:
            reason = f"needs {want} free on one GPU; the largest free is {fmt_free(top[0])} GB"
        else:
            reason = (
                f"needs {k} GPUs on one node with {want} free each; "
                f"the largest free is {fmt_free(top[0])} GB"
            )
        state.unplaced.append((s.name, reason))
        return None


def _size(s: ServiceDemand) -> tuple[int, str]:
    return (-to_mib(s.vram_gb) * s.gpu_count, s.name)


def _vram_based(state: State, services: list[ServiceDemand]) -> None:
    placer = Placer(state, state.usable())
    for s in sorted(services, key=_size):
        placer.place(s)


def _speed(state: State, gpus: tuple[int, ...]) -> Hashable:
    return -min(state.gpus[i].speed for i in gpus)


def _latency_optimized(state: State, services: list[ServiceDemand]) -> None:
    placer = Placer(state, state.usable(), _speed)

    def fastest(k: int, need: int) -> Choice | None:
        for _, pool in sorted(placer.groups(k), key=lambda kp: cast(float, kp[0])):
            top = pool.top()
            if top and top[0] >= need:
                return pool, top[1]
        return None

    rank = {c: n for n, c in enumerate(LATENCY_CLASSES)}
    for s in sorted(services, key=lambda s: (rank[s.latency_class], *_size(s))):
        placer.place(s, fastest if s.latency_class == "critical" else None)


def _totals(state: State, gpus: tuple[int, ...]) -> Hashable:
    return tuple(sorted(state.total[i] for i in gpus))


def _balanced(state: State, services: list[ServiceDemand]) -> None:
    """Largest first onto the unit whose utilisation after placing is lowest, then a bounded
    local search (`improve`) that moves and swaps services off the most utilised GPU.

    Within a group of equal-sized units the one with most free VRAM has the lowest utilisation
    after placing, so only each group's top is scored (exact for nodes of one GPU model).
    """
    pinned = {p.service for p in state.placements}
    placer = Placer(state, state.usable(), _totals)

    def lowest(k: int, need: int) -> Choice | None:
        best: tuple[float, int, Pool] | None = None
        for _, pool in placer.groups(k):
            top = pool.top()
            if top and top[0] >= need:
                score = max(
                    (state.total[i] - state.free[i] + need) / max(state.total[i], 1)
                    for i in pool.best(top[1])
                )
                if best is None or (score, top[1]) < best[:2]:
                    best = (score, top[1], pool)
        return (best[2], best[1]) if best else None

    for s in sorted(services, key=_size):
        placer.place(s, lowest)
    improve(state, pinned)


def _isolation_first(state: State, services: list[ServiceDemand]) -> None:
    """Isolated services each alone on the empty GPU(s) with most VRAM; the rest share others."""
    for p in state.placements:
        if state.demands[p.service].isolation:
            state.block(state.ids[(p.node, i)] for i in p.gpus)
    empty = Placer(state, [i for i in state.usable() if state.used[i] == 0])
    rest = []
    for s in sorted(services, key=_size):
        if not s.isolation:
            rest.append(s)
        elif (ids := empty.place(s)) is not None:
            state.block(ids)
    _vram_based(state, rest)


def plan(
    strategy: str,
    gpus: Sequence[GpuSlot],
    services: Sequence[ServiceDemand],
    pins: Sequence[Pin] = (),
    time_limit_s: float = OPTIMAL_LIMIT_S,
) -> Plan:
    """Place services on GPUs; pure and deterministic (input order does not matter).

    ``time_limit_s`` bounds ``optimal`` only (deterministic seconds of CP-SAT, about wall
    seconds); it starts from the ``balanced`` plan.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; valid: {', '.join(STRATEGIES)}")
    validate(gpus, services, pins)
    state = State(gpus)
    by_name = {s.name: s for s in services}
    moved = state.apply_pins(pins, by_name)
    pinned = {p.service for p in pins} - moved
    todo = sorted((s for s in services if s.name not in pinned), key=lambda s: s.name)
    if strategy == "optimal":
        from .optimal import place_optimal

        hint = plan("balanced", gpus, services, pins).placements
        proved = place_optimal(state, todo, time_limit_s, hint)
        return replace(state.finish(), proved_optimal=proved)
    if strategy == "manual":
        _vram_based(state, [s for s in todo if s.name in moved])
        state.unplaced += [
            (s.name, "no pin (manual strategy)") for s in todo if s.name not in moved
        ]
    else:
        {
            "vram_based": _vram_based,
            "latency_optimized": _latency_optimized,
            "isolation_first": _isolation_first,
            "balanced": _balanced,
        }[strategy](state, todo)
    return state.finish()
