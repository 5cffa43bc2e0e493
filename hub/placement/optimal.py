"""The exact reference strategy ``optimal``: OR-Tools CP-SAT, an optional extra.

Lexicographic goals, each a CP-SAT phase that fixes the previous phase's best value:
1. place the most services, then the most VRAM by full estimate (so a large service is not left
out for a smaller one's budget); 2. with over-commit (the default), a service may go to any GPU
whose usable size holds it, and the total VRAM reserved past capacity (MiB summed over GPUs) is
minimised; in strict mode no GPU goes past its free room; 3. shrink adjustable budgets as little
as possible (a budget shrinks to fit, as in the other strategies, never merely to lower
utilisation); 4. minimise the highest GPU utilisation (VRAM reserved / usable VRAM, in units of
1/10,000; above 10,000 when over-committed). Each phase runs within what is left of a
*deterministic* time limit on one worker, so the same input gives the same plan; ``proved`` says
whether every phase proved its optimum. The limit is also kept in wall time, building the model
included: on a loaded machine a phase stops at the wall limit (the plan may then differ from an
idle run), and a model that cannot be built in time falls back to the heuristic's plan, unproved.
Pins are placed first, as in the other strategies; latency classes do not enter the objective.
Isolation is a constraint. Over-commit is warned per GPU only (``combined_over_capacity``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from . import wording
from .engine import BUDGET_STEP_MIB, State, to_mib
from .model import MIB_PER_GIB, Placement, ServiceDemand

SCALE = 10_000  # utilisation unit: 1/10,000
MAX_PAIRS = 2_000_000  # service x GPU pairs past which the model would not fit in memory
INSTALL = "strategy 'optimal' needs OR-Tools: pip install 'gpufleet[optimal]'"


class OptimalUnavailable(ValueError):
    """OR-Tools is not installed, or the instance is too large for an exact model."""


class _OutOfTime(Exception):
    """The time limit passed while building the model."""


@dataclass(frozen=True)
class Choice:
    service: ServiceDemand
    ids: tuple[int, ...]
    mib: int


def _cp_model() -> Any:
    try:
        from ortools.sat.python import cp_model
    except ImportError:
        raise OptimalUnavailable(INSTALL) from None
    return cp_model


def _budget_values(s: ServiceDemand) -> list[int]:
    need = to_mib(s.vram_gb)
    if s.min_gb is None:
        return [need]
    low = to_mib(s.min_gb)
    steps = range((low // BUDGET_STEP_MIB + 1) * BUDGET_STEP_MIB, need, BUDGET_STEP_MIB)
    return sorted({low, need, *steps})


class Model:
    def __init__(
        self,
        state: State,
        services: Sequence[ServiceDemand],
        deadline: float = float("inf"),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        cp_model = _cp_model()
        self.deadline, self.clock = deadline, clock
        self.cp = cp_model
        self.state = state
        self.services = list(services)
        self.m = cp_model.CpModel()
        ids = state.usable()
        if len(ids) * len(self.services) > MAX_PAIRS:
            raise OptimalUnavailable(
                f"strategy 'optimal': {len(ids)} GPUs x {len(self.services)} services is too large "
                f"for an exact model (limit {MAX_PAIRS:,} pairs); use balanced"
            )
        free = {i: max(state.total[i] - state.used[i], 0) for i in ids}
        # where a service may go: its smallest budget within the GPU's free room (strict) or its
        # usable size (over-commit)
        room = {i: state.total[i] for i in ids} if state.overcommit else free
        by_node: dict[str, list[int]] = {}
        for i in ids:
            by_node.setdefault(state.gpus[i].node, []).append(i)
        self.x: dict[tuple[int, int], Any] = {}  # (service, gpu) -> bool
        self.budget: dict[int, Any] = {}
        self.placed: list[Any] = []
        self.on_gpu: dict[int, list[tuple[int, Any, int]]] = {i: [] for i in ids}
        self.groups: list[tuple[int, Any, list[int]]] = []  # (service, on-node var, GPUs)
        self.u: dict[tuple[int, int], Any] = {}
        for k, s in enumerate(self.services):
            if clock() > deadline:
                raise _OutOfTime
            values = _budget_values(s)
            fits = [i for i in ids if room[i] >= values[0] and self._open_for(s, i)]
            groups = [
                [i for i in g if i in fits] for g in by_node.values() if len(g) >= s.gpu_count
            ]
            groups = [g for g in groups if len(g) >= s.gpu_count]
            placed = self.m.NewBoolVar(f"placed_{k}")
            self.placed.append(placed)
            budget = (
                self.m.NewIntVarFromDomain(cp_model.Domain.FromValues(values), f"b_{k}")
                if len(values) > 1
                else None
            )
            if budget is not None:
                self.budget[k] = budget
            on_node = []
            for group in groups:
                y = self.m.NewBoolVar(f"y_{k}_{group[0]}")
                on_node.append(y)
                self.groups.append((k, y, group))
                xs = []
                for i in group:
                    x = self.m.NewBoolVar(f"x_{k}_{i}")
                    self.x[(k, i)] = x
                    xs.append(x)
                    if budget is None:
                        self.on_gpu[i].append((k, x, values[0]))
                    else:
                        u = self.m.NewIntVar(0, min(values[-1], room[i]), f"u_{k}_{i}")
                        self.m.Add(u == budget).OnlyEnforceIf(x)
                        self.m.Add(u == 0).OnlyEnforceIf(x.Not())
                        self.on_gpu[i].append((k, u, 1))
                        self.u[(k, i)] = u
                self.m.Add(sum(xs) == s.gpu_count * y)
            self.m.Add(sum(on_node) == placed)
        high = [SCALE, *self._pinned_util(ids)]
        self.over: list[Any] = []  # MiB past each GPU's usable size (over-commit mode)
        for i in ids:
            terms = [var * coef for _, var, coef in self.on_gpu[i]]
            most = state.used[i] + sum(
                _budget_values(self.services[k])[-1] for k, _, _ in self.on_gpu[i]
            )
            high.append(-(-SCALE * most // max(state.total[i], 1)))
            if state.overcommit:
                over = self.m.NewIntVar(0, max(most - state.total[i], 0), f"over_{i}")
                self.m.Add(over >= state.used[i] + sum(terms) - state.total[i])
                self.over.append(over)
            else:
                self.m.Add(sum(terms) <= free[i])
        self.z = self.m.NewIntVar(0, max(high), "z")
        for i in ids:
            terms = [var * coef for _, var, coef in self.on_gpu[i]]
            self.m.Add(SCALE * (state.used[i] + sum(terms)) <= self.z * state.total[i])
            here = [k for k, _, _ in self.on_gpu[i]]
            for k in here:
                others = [self.x[(t, i)] for t in here if t != k]
                if self.services[k].isolation and others:
                    self.m.Add(sum(others) == 0).OnlyEnforceIf(self.x[(k, i)])

    def _open_for(self, s: ServiceDemand, i: int) -> bool:
        """An isolated service only goes to a GPU that no pin uses."""
        return not s.isolation or self.state.used[i] == 0

    def _pinned_util(self, ids: list[int]) -> list[int]:
        st = self.state
        return [-(-SCALE * st.used[i] // max(st.total[i], 1)) for i in ids]

    def hint(self, placements: Sequence[Placement]) -> None:
        """A complete solution to start from (a heuristic's plan), where it is one."""
        where = {p.service: p for p in placements}
        chosen: dict[int, tuple[set[int], int]] = {}
        for k, s in enumerate(self.services):
            p = where.get(s.name)
            if p is not None:
                ids = {self.state.ids[(p.node, g)] for g in p.gpus}
                if all((k, i) in self.x for i in ids):
                    chosen[k] = (ids, to_mib(p.vram_gb))
        used = {i: self.state.used[i] for i in self.on_gpu}
        for (k, i), x in self.x.items():
            on = k in chosen and i in chosen[k][0]
            self.m.AddHint(x, on)
            used[i] += chosen[k][1] if on else 0
            if (k, i) in self.u:
                self.m.AddHint(self.u[(k, i)], chosen[k][1] if on else 0)
        for k, y, group in self.groups:
            self.m.AddHint(y, k in chosen and chosen[k][0] <= set(group))
        for k, placed in enumerate(self.placed):
            self.m.AddHint(placed, k in chosen)
        for k, b in self.budget.items():
            self.m.AddHint(b, chosen[k][1] if k in chosen else _budget_values(self.services[k])[0])
        st = self.state
        util = [-(-SCALE * used[i] // max(st.total[i], 1)) for i in used]
        self.m.AddHint(self.z, max([0, *util]))

    def solve(self, limit_s: float) -> tuple[list[Choice] | None, bool]:
        """The choices (None: none within the limit), and whether every phase proved its optimum."""
        proved = True
        estimate = [to_mib(s.vram_gb) * s.gpu_count for s in self.services]  # goal 1, as one
        weight = sum(estimate) + 1
        placed = sum(p * (weight + mib) for p, mib in zip(self.placed, estimate, strict=True))
        phases: list[tuple[Any, bool]] = [(placed, True)]
        if self.over:
            phases.append((sum(self.over), False))
        if self.budget:
            phases.append((sum(self.budget.values()), True))
        phases.append((self.z, False))
        solver = self.cp.CpSolver()
        solver.parameters.num_workers = 1
        solver.parameters.random_seed = 0
        remaining = limit_s
        last: _Snapshot | None = None
        for objective, maximise in phases:
            if last is not None and (remaining <= 0 or self.clock() >= self.deadline):
                return self._choices(last), False  # out of time: the later goals unmet
            (self.m.Maximize if maximise else self.m.Minimize)(objective)
            solver.parameters.max_deterministic_time = max(remaining, 0.01)
            solver.parameters.max_time_in_seconds = max(self.deadline - self.clock(), 0.01)
            status = solver.Solve(self.m)
            remaining -= solver.deterministic_time
            if status not in (self.cp.OPTIMAL, self.cp.FEASIBLE):
                return (self._choices(last) if last is not None else None), False
            proved = proved and status == self.cp.OPTIMAL
            best = round(solver.ObjectiveValue())
            self.m.Add(objective >= best if maximise else objective <= best)
            self._keep(solver)
            last = _Snapshot(solver, self)
        assert last is not None  # every phase found a solution
        return self._choices(last), proved

    def _keep(self, solver: Any) -> None:
        """Start the next phase from this phase's solution."""
        self.m.ClearHints()
        for var in [*self.x.values(), *self.placed, *(y for _, y, _ in self.groups)]:
            self.m.AddHint(var, solver.BooleanValue(var))
        for var in [*self.budget.values(), *self.u.values(), *self.over, self.z]:
            self.m.AddHint(var, solver.Value(var))

    def _choices(self, snap: _Snapshot) -> list[Choice]:
        chosen = []
        for k, s in enumerate(self.services):
            ids = tuple(sorted(i for (t, i) in self.x if t == k and snap.on[(t, i)]))
            if ids:
                mib = snap.budget[k] if k in self.budget else to_mib(s.vram_gb)
                chosen.append(Choice(s, ids, mib))
        return chosen


class _Snapshot:
    """A phase's solution, kept in case a later phase finds none within the limit."""

    def __init__(self, solver: Any, model: Model) -> None:
        self.on = {key: bool(solver.BooleanValue(x)) for key, x in model.x.items()}
        self.budget = {k: int(solver.Value(b)) for k, b in model.budget.items()}


def place_optimal(
    state: State,
    services: Sequence[ServiceDemand],
    limit_s: float,
    hint: Sequence[Placement] = (),
    clock: Callable[[], float] = time.monotonic,
) -> bool:
    """Place `services` on `state` (pins already in it); True when optimality was proved."""
    services = sorted(services, key=lambda s: s.name)
    if not services:
        return True
    try:
        model = Model(state, services, clock() + limit_s, clock)
        model.hint(hint)
        found, proved = model.solve(limit_s)
    except _OutOfTime:
        found, proved = None, False
    choices = found if found is not None else _from_hint(state, services, hint)
    done = {c.service.name for c in choices}
    for c in choices:
        s = c.service
        if c.mib >= to_mib(s.vram_gb):
            state.reserve(s, c.ids, s.vram_gb, None)
        else:
            budget = c.mib / MIB_PER_GIB
            state.reserve(s, c.ids, budget, budget)
            state.warn_adjusted(s, c.ids, budget)
    usable = state.usable()
    state.unplaced += [(s.name, wording.after_all(state, s, usable))
                       for s in services if s.name not in done]  # fmt: skip
    return proved


def _from_hint(
    state: State, services: Sequence[ServiceDemand], hint: Sequence[Placement]
) -> list[Choice]:
    """No solution within the limit: fall back to the heuristic's plan."""
    by_name = {s.name: s for s in services}
    return [
        Choice(by_name[p.service], tuple(state.ids[(p.node, g)] for g in p.gpus), to_mib(p.vram_gb))
        for p in hint
        if p.service in by_name
    ]
