"""A bounded local search after ``balanced``'s greedy pass: lower the highest GPU utilisation.

Repeatedly takes the most utilised GPU and moves one of its single-GPU services to another GPU,
or swaps it with a smaller service of another GPU, when that leaves both GPUs strictly below the
current highest utilisation (so the number of GPUs at the highest level, or the level itself,
drops at every step). Stops when the most utilised GPU cannot be relieved, or when the work cap
is spent; the cap counts candidate checks, not seconds, so the result stays deterministic.

Only strategy-placed, single-GPU services at their full size move: pins, tensor-parallel
services (they stay on their node), services with an adjusted budget and isolated services stay
where they are, and nothing moves onto a GPU that holds an isolated service, onto a lost or
blocked GPU, or past a GPU's capacity.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection
from dataclasses import replace

from .engine import State, to_mib

WORK_CAP = 400_000  # candidate moves and swaps checked, in all


class _Search:
    def __init__(self, state: State, fixed: Collection[str]) -> None:
        self.state = state
        self.total = [max(t, 1) for t in state.total]
        used = state.used
        # placement position -> (GPU id, MiB), for the services that may move
        self.moving: dict[int, tuple[int, int]] = {}
        self.on: list[list[int]] = [[] for _ in state.gpus]
        closed = {i for i, g in enumerate(state.gpus) if g.lost} | state.blocked
        for n, p in enumerate(state.placements):
            s = state.demands[p.service]
            ids = [state.ids[(p.node, x)] for x in p.gpus]
            if s.isolation:
                closed.update(ids)
            elif p.service not in fixed and len(ids) == 1 and p.budget_gb is None:
                self.moving[n] = (ids[0], to_mib(p.vram_gb))
                self.on[ids[0]].append(n)
        self.open = [i not in closed and state.total[i] > 0 for i in range(len(state.gpus))]
        # Per capacity, a lazy min-heap of (used MiB, GPU id) over open GPUs: the best target of
        # a move within one capacity is the one with least VRAM used.
        self.classes: dict[int, list[tuple[int, int]]] = {}
        for i, ok in enumerate(self.open):
            if ok:
                self.classes.setdefault(state.total[i], []).append((used[i], i))
        for heap in self.classes.values():
            heapq.heapify(heap)
        self.top = [(-self.util(i), i) for i in range(len(state.gpus)) if self.on[i]]
        heapq.heapify(self.top)
        self.work = 0

    def util(self, i: int) -> float:
        return self.state.used[i] / self.total[i]

    def least_used(self, total: int) -> int | None:
        heap, used = self.classes[total], self.state.used
        while heap and heap[0][0] != used[heap[0][1]]:
            heapq.heapreplace(heap, (used[heap[0][1]], heap[0][1]))
        return heap[0][1] if heap else None

    def most_used(self) -> int | None:
        heap = self.top
        while heap:
            neg, i = heap[0]
            if -neg == self.util(i) and self.on[i]:
                return i
            heapq.heappop(heap)
            if self.on[i]:
                heapq.heappush(heap, (-self.util(i), i))
        return None

    def below(self, mib: int, j: int, t: int) -> bool:
        """Whether GPU j at `mib` used is strictly under GPU t's utilisation, within capacity."""
        used, total = self.state.used, self.total
        return mib <= self.state.total[j] and mib * total[t] < used[t] * total[j]

    def best_move(self, t: int) -> tuple[float, int, int] | None:
        used, total = self.state.used, self.total
        best: tuple[float, int, int] | None = None
        for n in self.on[t]:
            mib = self.moving[n][1]
            for capacity in self.classes:
                self.work += 1
                j = self.least_used(capacity)
                if j is None or j == t or not self.below(used[j] + mib, j, t):
                    continue
                score = max((used[t] - mib) / total[t], (used[j] + mib) / total[j])
                if best is None or (score, n, j) < best:
                    best = (score, n, j)
        return best

    def best_swap(self, t: int) -> tuple[float, int, int] | None:
        used, total = self.state.used, self.total
        best: tuple[float, int, int] | None = None
        mine = sorted(self.on[t], key=lambda n: self.moving[n][1])
        for j, theirs in enumerate(self.on):
            self.work += 1
            if j == t or not theirs or not self.open[j] or not self.below(used[j], j, t):
                continue
            for m in theirs:
                small = self.moving[m][1]
                for n in reversed(mine):
                    self.work += 1
                    big = self.moving[n][1]
                    if big <= small:
                        break
                    if not self.below(used[j] + big - small, j, t):
                        continue
                    score = max(
                        (used[t] - big + small) / total[t], (used[j] + big - small) / total[j]
                    )
                    if best is None or (score, n, m) < best:
                        best = (score, n, m)
            if self.work > WORK_CAP:
                break
        return best

    def shift(self, n: int, j: int) -> None:
        """Move placement n to GPU j."""
        state = self.state
        i, mib = self.moving[n]
        self.on[i].remove(n)
        self.on[j].append(n)
        self.moving[n] = (j, mib)
        for gpu, delta in ((i, -mib), (j, mib)):
            state.used[gpu] += delta
            if gpu not in state.blocked:
                state.free[gpu] -= delta
                state.want[gpu] -= delta
            if self.open[gpu]:
                heapq.heappush(self.classes[state.total[gpu]], (state.used[gpu], gpu))
            if self.on[gpu]:
                heapq.heappush(self.top, (-self.util(gpu), gpu))
        g = state.gpus[j]
        state.placements[n] = replace(state.placements[n], node=g.node, gpus=(g.index,))

    def run(self) -> None:
        while self.work <= WORK_CAP:
            t = self.most_used()
            if t is None:
                return
            move = self.best_move(t)
            if move is not None:
                self.shift(move[1], move[2])
                continue
            swap = self.best_swap(t)
            if swap is None:
                return
            _, n, m = swap
            j = self.moving[m][0]
            self.shift(n, j)
            self.shift(m, t)


def improve(state: State, fixed: Collection[str]) -> None:
    """Lower the highest GPU utilisation of the placements in `state`; `fixed` services stay."""
    _Search(state, fixed).run()
