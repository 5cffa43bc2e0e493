"""The five assignment strategies of the multi-GPU design, and `plan()`.

Shared rules: pins are placed first, exactly as given (warned, never refused); a pin naming a lost
or missing GPU is placed by the strategy instead (``manual`` uses ``vram_based`` for those) and
warned ``gpu_lost_moved``. Services are then placed one by one; one that does not fit at full size
but has an adjustable budget goes to the GPU (or node) with the most free VRAM at the largest
0.5 GB step that fits, never below ``min_gb``. Lost GPUs are never used.

Over-commit (the default, "warn but allow"): a service that fits no GPU's free room even at its
``min_gb`` goes to a GPU whose usable size (memory less what processes gpufleet did not start
hold) holds it, at ``min_gb`` when adjustable: of those, the one least short when every service
counts at its full estimate (so a GPU whose budget was just auto-adjusted to fit it is not filled
further while another has room by that measure); warned ``over_committed`` plus the GPU's
``combined_over_capacity``. Only a service larger than every usable GPU is unplaced. Strict mode
(``overcommit=False``) never goes past a GPU's free room and leaves such services unplaced.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import replace
from typing import cast

from . import wording
from .engine import BLOCKED, Pool, State, to_mib, validate
from .improve import improve
from .model import LATENCY_CLASSES, GpuSlot, Pin, Plan, ServiceDemand, Warning

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
        self._wants: dict[int, list[tuple[int, Pool]]] = {}

    def units(self, k: int) -> list[tuple[int, tuple[int, ...]]]:
        """(rank, GPU ids): each GPU for k = 1, else each node with k GPUs or more."""
        if k == 1:
            return [(i, (i,)) for i in self.ids]
        by_node: dict[str, list[int]] = {}
        for i in self.ids:
            by_node.setdefault(self.state.gpus[i].node, []).append(i)
        return [(g[0], tuple(g)) for g in by_node.values() if len(g) >= k]

    def groups(self, k: int) -> list[tuple[Hashable, Pool]]:
        if k not in self._pools:
            parts: dict[Hashable, list[tuple[int, tuple[int, ...]]]] = {}
            for rank, gpus in self.units(k):
                key = self.group(self.state, gpus) if self.group else 0
                parts.setdefault(key, []).append((rank, gpus))
            self._pools[k] = [(key, Pool(self.state.free, parts[key], k)) for key in parts]
        return self._pools[k]

    def wants(self, k: int) -> list[tuple[int, Pool]]:
        """Pools over ``want``, one per size (a unit's k-th largest usable size), largest first."""
        if k not in self._wants:
            total = self.state.total
            parts: dict[int, list[tuple[int, tuple[int, ...]]]] = {}
            for rank, gpus in self.units(k):
                size = sorted((total[i] for i in gpus), reverse=True)[k - 1]
                parts.setdefault(size, []).append((rank, gpus))
            self._wants[k] = [
                (size, Pool(self.state.want, parts[size], k))
                for size in sorted(parts, reverse=True)
            ]
        return self._wants[k]

    def most_free(self, k: int) -> tuple[int, Pool, int] | None:
        best: tuple[int, Pool, int] | None = None
        for _, pool in self.groups(k):
            top = pool.top()
            if top and (best is None or (top[0], -top[1]) > (best[0], -best[2])):
                best = (top[0], pool, top[1])
        return best

    def over(self, k: int, floor: int) -> list[int] | None:
        """Where to over-commit: of the units whose k GPUs each hold `floor` MiB, the one with
        the most ``want`` (the least short counting services at their full estimates)."""
        best: tuple[int, int, Pool] | None = None
        for size, pool in self.wants(k):
            if size < floor:
                break
            top = pool.top()
            if top and top[0] > BLOCKED // 2 and (best is None or (top[0], -top[1]) > best[:2]):
                best = (top[0], -top[1], pool)
        if best is None:
            return None
        gpus = [i for i in best[2].units[-best[1]] if self.state.total[i] >= floor]
        return sorted(sorted(gpus, key=lambda i: (-self.state.want[i], i))[:k])

    def place(
        self, s: ServiceDemand, choose: Callable[[int, int], Choice | None] | None = None
    ) -> list[int] | None:
        """Place s (the chooser's pick, else the most free unit; an adjustable budget shrinks
        to fit; with over-commit, the best unit it fits by size); returns its GPU ids."""
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
        usable = top is not None and top[0] > BLOCKED // 2
        short = wording.short(state, s, self.ids, top[1].best(top[2])) if top and usable else ""
        floor = to_mib(s.min_gb if s.min_gb is not None else s.vram_gb)
        if usable and state.overcommit and (spot := self.over(k, floor)) is not None:
            budget = s.min_gb
            state.reserve(s, spot, s.vram_gb if budget is None else budget, budget)
            if budget is not None and budget < s.vram_gb:
                state.warn_adjusted(s, spot, budget)
            label = wording.gpu_label([state.gpus[i].index for i in spot])
            state.warnings.append(
                Warning("over_committed", f"{s.name} {short}; over-committed on {label}",
                        s.name, state.gpus[spot[0]].node, state.gpus[spot[0]].index)
            )  # fmt: skip
            return spot
        if not usable:
            reason = wording.no_gpu(s)
        elif state.overcommit and all(size < floor for size, _ in self.wants(k)):
            reason = wording.too_large(state, s, self.ids, self.largest(k))
        else:  # strict, or the units large enough are taken (isolation): it is short of room
            reason = short
        state.unplaced.append((s.name, reason))
        return None

    def largest(self, k: int) -> int:
        """A GPU of the unit with the largest k-th usable size (the most free of them),
        preferring units not blocked by isolation; blocked ones when nothing else is left."""
        state = self.state
        if k == 1:
            gpus = [i for i in self.ids if i not in state.blocked] or list(self.ids)
            size = max(state.total[i] for i in gpus)
            candidates = [i for i in gpus if state.total[i] >= size]
        else:
            units = [(size, [i for unit in pool.units.values() for i in unit])
                     for size, pool in self.wants(k)]  # fmt: skip
            free = [(size, [i for i in gpus if i not in state.blocked]) for size, gpus in units]
            size, gpus = next(((sz, g) for sz, g in free if g), units[0])
            candidates = [i for i in gpus if state.total[i] >= size] or gpus
        return max(candidates, key=lambda i: (state.free[i], -i))


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
    overcommit: bool = True,
) -> Plan:
    """Place services on GPUs; pure and deterministic (input order does not matter).

    ``overcommit`` (the design's "warn but allow"): a service that fits no GPU's free room goes,
    over capacity and warned, to a GPU whose usable size holds it; only one larger than every
    GPU stays unplaced. False (strict mode): never past a GPU's free room.
    ``time_limit_s`` bounds ``optimal`` only (deterministic seconds of CP-SAT, about wall
    seconds); it starts from the ``balanced`` plan.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; valid: {', '.join(STRATEGIES)}")
    validate(gpus, services, pins)
    state = State(gpus, overcommit)
    by_name = {s.name: s for s in services}
    moved = state.apply_pins(pins, by_name)
    pinned = {p.service for p in pins} - moved
    todo = sorted((s for s in services if s.name not in pinned), key=lambda s: s.name)
    if strategy == "optimal":
        from .optimal import place_optimal

        hint = plan("balanced", gpus, services, pins, overcommit=overcommit).placements
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
