"""hub.placement: the seed host's expected plans per strategy, rules, and properties."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.placement import (
    STRATEGIES,
    GpuSlot,
    Pin,
    Placement,
    Plan,
    ServiceDemand,
    plan,
    speed_score,
)


def seed_gpus(lost: frozenset[int] = frozenset()) -> list[GpuSlot]:
    return [
        GpuSlot(
            "gpu-a", 0, "NVIDIA RTX A5500", 24564, speed_score("A5500", "8.6", 24564), 0 in lost
        ),
        GpuSlot("gpu-a", 1, "NVIDIA RTX A400", 4094, speed_score("A400", "8.6", 4094), 1 in lost),
    ]


# The seed's table; ai-yolo26 is critical too: the seed's latency strategy is "ai-yolo26 + ai-llm
# on GPU 0" (the critical path). ai-llm has isolation ("LLM gets dedicated GPU"). The seed gives
# 3.5 GB as enrichment's adjusted budget, used here as its floor.
SEED_SERVICES = [
    ServiceDemand("ai-llm", 21.7, latency_class="critical", isolation=True),
    ServiceDemand("ai-yolo26", 0.65, latency_class="critical"),
    ServiceDemand("ai-florence", 1.5),
    ServiceDemand("ai-clip", 1.2),
    ServiceDemand("ai-enrichment", 6.8, min_gb=3.5),
]
# The seed's PUT /api/system/gpu-config example.
SEED_PINS = [
    Pin("ai-llm", "gpu-a", (0,)),
    Pin("ai-yolo26", "gpu-a", (0,)),
    Pin("ai-enrichment", "gpu-a", (1,), vram_budget_gb=3.5),
]
ADJUSTED = (
    "ai-enrichment VRAM budget (6.8 GB) exceeds GPU 1 (4 GB) on gpu-a; auto-adjusted to 3.5 GB"
)


def placed(p: Plan, service: str) -> Placement:
    found = p.placement(service)
    assert found is not None, f"{service} not placed"
    return found


def where(p: Plan) -> dict[str, tuple[int, ...]]:
    return {x.service: x.gpus for x in p.placements}


def test_speed_score_rule() -> None:
    assert speed_score("A5500", "8.6", 24564) > speed_score("A400", "8.6", 4094)
    assert speed_score("H100", "9.0", 81559) > speed_score("A6000", "8.6", 49140)
    assert speed_score("x", "8.6", 4094, label_override=50.0) == 50.0
    assert speed_score("x", None, 1024) < speed_score("x", "7.5", 1024)


def test_seed_manual_places_pins_and_warns_like_the_seed() -> None:
    p = plan("manual", seed_gpus(), SEED_SERVICES, SEED_PINS)
    assert where(p) == {"ai-llm": (0,), "ai-yolo26": (0,), "ai-enrichment": (1,)}
    assert placed(p, "ai-enrichment").budget_gb == 3.5
    assert dict(p.unplaced) == {
        "ai-florence": "no pin (manual strategy)",
        "ai-clip": "no pin (manual strategy)",
    }
    assert [w.message for w in p.warnings if w.kind == "auto_adjusted"] == [ADJUSTED]
    assert sorted(p.kinds()) == ["auto_adjusted", "unplaced", "unplaced"]


def test_seed_same_gpu_for_all_is_allowed_and_warned() -> None:
    pins = [Pin(s.name, "gpu-a", (0,)) for s in SEED_SERVICES if s.name != "ai-enrichment"]
    pins.append(Pin("ai-enrichment", "gpu-a", (1,)))
    p = plan("manual", seed_gpus(), SEED_SERVICES, pins)
    assert not p.unplaced
    assert placed(p, "ai-enrichment").budget_gb == 3.5
    over = [w for w in p.warnings if w.kind == "combined_over_capacity"]
    assert [(w.gpu, w.message) for w in over] == [
        (0, "Combined VRAM (~25.1 GB) exceeds GPU 0 capacity (24 GB) on gpu-a")
    ]


def test_seed_large_model_and_budget_warnings_follow_the_seed_wording() -> None:
    pins = [Pin("ai-llm", "gpu-a", (1,)), Pin("ai-enrichment", "gpu-a", (1,), 6.8)]
    p = plan("manual", seed_gpus(), SEED_SERVICES, pins)
    messages = {w.kind: w.message for w in p.warnings}
    assert (
        messages["large_model_small_gpu"]
        == "ai-llm requires ~21.7 GB, GPU 1 only has 4 GB on gpu-a"
    )
    assert (
        messages["budget_over_capacity"]
        == "ai-enrichment budget (6.8 GB) exceeds GPU 1 (4 GB) on gpu-a"
    )
    assert "combined_over_capacity" in messages


# ---- the reference host, every strategy, both modes -------------------------------------------
# The host holds 28 GB; ai-llm + enrichment's 3.5 GB floor + the three small models need 28.55 GB.
# Over-commit (the default, the design's "warn but allow") places all five; strict mode
# (--no-overcommit) leaves what does not fit the free room out. Each row: placements as
# service -> (GPUs, budget), the unplaced services, and the warning kinds.
Plans = dict[str, tuple[tuple[int, ...], float | None]]
Row = tuple[Plans, list[str], list[str]]
DESIGNED: Plans = {
    "ai-llm": ((0,), None),
    "ai-yolo26": ((0,), None),
    "ai-florence": ((0,), None),
    "ai-clip": ((0,), None),
    "ai-enrichment": ((1,), 3.5),
}
SHARED: Plans = {**{name: ((1,), None) for name in DESIGNED}, "ai-llm": ((0,), None),
          "ai-enrichment": ((1,), 3.5)}  # fmt: skip
STRICT = {k: v for k, v in DESIGNED.items() if k != "ai-clip"}
ISOLATED = {k: v for k, v in SHARED.items() if k != "ai-enrichment"}
PINNED = {k: v for k, v in DESIGNED.items() if k in ("ai-llm", "ai-yolo26", "ai-enrichment")}
ADJ, OVER, COMBINED, OUT = "auto_adjusted", "over_committed", "combined_over_capacity", "unplaced"
REFERENCE: dict[tuple[str, bool], Row] = {
    # vram_based: largest first onto the most free GPU; enrichment fits no GPU at 6.8 GB and takes
    # GPU 1's largest 0.5 GB step (3.5 GB); ai-clip then ai-yolo26 find no room and go to GPU 0,
    # the GPU least short when every service counts at its full estimate (GPU 1 counts
    # enrichment at 6.8 GB), so GPU 1 keeps the budget it was sized for.
    ("vram_based", True): (DESIGNED, [], sorted([ADJ, COMBINED, OVER, OVER])),
    ("vram_based", False): (STRICT, ["ai-clip"], [ADJ, OUT]),
    # latency_optimized: the critical ai-llm and ai-yolo26 first, on the fastest GPU (GPU 0).
    ("latency_optimized", True): (DESIGNED, [], sorted([ADJ, COMBINED, OVER])),
    ("latency_optimized", False): (STRICT, ["ai-clip"], [ADJ, OUT]),
    # balanced: the greedy pass gives vram_based's plan; nothing can move off GPU 0 without
    # putting GPU 1 past its capacity, so the local search keeps it.
    ("balanced", True): (DESIGNED, [], sorted([ADJ, COMBINED, OVER, OVER])),
    ("balanced", False): (STRICT, ["ai-clip"], [ADJ, OUT]),
    # isolation_first: ai-llm alone on GPU 0; the rest share GPU 1, over it with a warning
    # (strict: only enrichment fits there).
    ("isolation_first", True): (SHARED, [], sorted([ADJ, COMBINED, OVER, OVER, OVER])),
    ("isolation_first", False): (
        {"ai-llm": ((0,), None), "ai-enrichment": ((1,), 3.5)},
        ["ai-clip", "ai-florence", "ai-yolo26"],
        [ADJ, OUT, OUT, OUT],
    ),
    # optimal: ai-llm's isolation is a constraint; with over-commit every service fits some GPU's
    # size and the least VRAM past capacity with ai-llm alone is the shared GPU 1 (2.85 GB over);
    # strict: four services at most, and ai-llm (the most VRAM) is one of them.
    ("optimal", True): (SHARED, [], [ADJ, COMBINED]),
    ("optimal", False): (ISOLATED, ["ai-enrichment"], [OUT]),
    # manual: the seed's PUT example pins; nothing else is placed.
    ("manual", True): (PINNED, ["ai-clip", "ai-florence"], [ADJ, OUT, OUT]),
    ("manual", False): (PINNED, ["ai-clip", "ai-florence"], [ADJ, OUT, OUT]),
}


@pytest.mark.parametrize(("strategy", "overcommit"), sorted(REFERENCE))
def test_reference_host_plan(strategy: str, overcommit: bool) -> None:
    if strategy == "optimal":
        pytest.importorskip("ortools")
    pins = SEED_PINS if strategy == "manual" else []
    p = plan(strategy, seed_gpus(), SEED_SERVICES, pins, overcommit=overcommit)
    expected, unplaced, kinds = REFERENCE[(strategy, overcommit)]
    assert {x.service: (x.gpus, x.budget_gb) for x in p.placements} == expected
    assert [name for name, _ in p.unplaced] == unplaced
    assert sorted(p.kinds()) == kinds
    if ADJ in kinds:
        assert [w.message for w in p.warnings if w.kind == ADJ] == [ADJUSTED]


def test_reference_host_recommended_plan_warns_as_the_design_says() -> None:
    p = plan("vram_based", seed_gpus(), SEED_SERVICES)
    messages = {(w.kind, w.service): w.message for w in p.warnings}
    assert messages[(COMBINED, "")] == (
        "Combined VRAM (~25.1 GB) exceeds GPU 0 capacity (24 GB) on gpu-a"
    )
    assert messages[(OVER, "ai-clip")] == (
        "ai-clip needs 1.2 GB free on one GPU; the most free on any GPU of gpu-a is 0.7 GB "
        "(GPU 0, 23.2 of 24 GB used); over-committed on GPU 0"
    )
    strict = plan("vram_based", seed_gpus(), SEED_SERVICES, overcommit=False)
    assert dict(strict.unplaced)["ai-clip"] == (
        "needs 1.2 GB free on one GPU; the most free on any GPU of gpu-a is 0.7 GB "
        "(GPU 0, 23.2 of 24 GB used)"
    )


def test_adjusted_budget_is_the_largest_half_gb_step_of_the_free_room() -> None:
    """Where 3.5 GB comes from: the A400 has 4094 MiB (3.998 GB), and the largest whole 0.5 GB
    step that fits is 3.5 GB, whatever the floor; a 4096 MiB card gets 4 GB, and VRAM held by
    processes gpufleet did not start comes off first."""
    low = [ServiceDemand("ai-enrichment", 6.8, min_gb=1.0)]
    assert placed(plan("vram_based", seed_gpus()[1:], low), "ai-enrichment").budget_gb == 3.5
    exact = [GpuSlot("gpu-a", 1, "A400", 4096)]
    assert placed(plan("vram_based", exact, low), "ai-enrichment").budget_gb == 4.0
    held = [GpuSlot("gpu-a", 1, "A400", 4094, foreign_mb=600)]
    assert placed(plan("vram_based", held, low), "ai-enrichment").budget_gb == 3.0


FOREIGN_GPU = [GpuSlot("gpu-c", 0, "NVIDIA RTX A5500", 24564, foreign_mb=19340)]
HELD = "GPU 0, 18.9 of 24 GB used, 18.9 GB of it by processes gpufleet did not start"


def test_foreign_vram_is_not_free_in_either_mode() -> None:
    big = [ServiceDemand("chat", 72)]
    strict = plan("balanced", FOREIGN_GPU, big, overcommit=False)
    assert dict(strict.unplaced)["chat"] == (
        f"needs 72 GB free on one GPU; the most free on any GPU of gpu-c is 5.1 GB ({HELD})"
    )
    # Over-commit: a 6 GB service exceeds the 5.1 GB that is usable, so it is not placed either.
    p = plan("balanced", FOREIGN_GPU, [ServiceDemand("six", 6)])
    assert dict(p.unplaced)["six"] == (
        "needs 6 GB on one GPU, more than any GPU of gpu-c holds; the largest is 5.1 GB usable "
        f"of 24 GB ({HELD})"
    )
    assert [w.message for w in p.warnings if w.kind == "foreign_vram"] == [
        "GPU 0 on gpu-c: 18.9 of 24 GB held by processes gpufleet did not start; placement uses "
        "the other 5.1 GB"
    ]
    two = [ServiceDemand("a", 4), ServiceDemand("b", 3)]
    p = plan("vram_based", FOREIGN_GPU, two)
    assert where(p) == {"a": (0,), "b": (0,)}
    assert [w.message for w in p.warnings if w.kind == COMBINED] == [
        "Combined VRAM (~25.9 GB, 18.9 GB of it held by processes gpufleet did not start) "
        "exceeds GPU 0 capacity (24 GB) on gpu-c"
    ]
    assert dict((w.service, w.message) for w in p.warnings if w.kind == OVER)["b"] == (
        "b needs 3 GB free on one GPU; the most free on any GPU of gpu-c is 1.1 GB "
        "(GPU 0, 22.9 of 24 GB used, 18.9 GB of it by processes gpufleet did not start); "
        "over-committed on GPU 0"
    )


def test_overcommit_leaves_out_only_what_exceeds_every_gpu() -> None:
    gpus = [GpuSlot("n", 0, "A10", 24 * 1024), GpuSlot("n", 1, "A10", 24 * 1024)]
    services = [ServiceDemand(f"s{k}", 20) for k in range(3)]
    services += [ServiceDemand("huge", 30), ServiceDemand("zoo", 16, min_gb=5)]
    p = plan("balanced", gpus, services)
    assert [name for name, _ in p.unplaced] == ["huge"]
    assert placed(p, "zoo").budget_gb == 5  # over-committed at its floor
    assert sorted(p.kinds("zoo")) == [ADJ, OVER]
    assert dict(p.unplaced)["huge"].startswith("needs 30 GB on one GPU, more than any GPU of n")
    strict = plan("balanced", gpus, services, overcommit=False)
    assert sorted(name for name, _ in strict.unplaced) == ["huge", "s2", "zoo"]


def test_lost_gpu_pin_is_moved_and_warned() -> None:
    lost = seed_gpus(lost=frozenset({1}))
    p = plan("manual", lost, SEED_SERVICES, SEED_PINS, overcommit=False)
    assert where(p) == {"ai-llm": (0,), "ai-yolo26": (0,)}
    # enrichment's pinned GPU 1 is gone; vram_based (manual's fallback) finds 1.6 GB on GPU 0,
    # under its 3.5 GB floor: strict mode leaves it unplaced (warned, never blocking) ...
    assert sorted(p.kinds("ai-enrichment")) == ["gpu_lost_moved", "unplaced"]
    assert dict(p.unplaced)["ai-enrichment"] == (
        "needs 6.8 GB (at least 3.5 GB) free on one GPU; the most free on any GPU of gpu-a is "
        "1.6 GB (GPU 0, 22.4 of 24 GB used)"
    )
    # ... and over-commit puts it on GPU 0 at its floor.
    p = plan("manual", lost, SEED_SERVICES, SEED_PINS)
    assert placed(p, "ai-enrichment") == Placement("ai-enrichment", "gpu-a", (0,), 3.5, 3.5)
    assert sorted(p.kinds("ai-enrichment")) == ["auto_adjusted", "gpu_lost_moved", "over_committed"]
    pins = [Pin("ai-llm", "gpu-a", (0,)), Pin("ai-florence", "gpu-a", (1,))]
    p = plan("manual", seed_gpus(lost=frozenset({1})), SEED_SERVICES, pins)
    assert where(p) == {"ai-llm": (0,), "ai-florence": (0,)}
    assert p.kinds("ai-florence") == ["gpu_lost_moved"]


def test_unknown_strategy_names_valid_ones() -> None:
    with pytest.raises(ValueError, match="vram_based"):
        plan("fastest", seed_gpus(), SEED_SERVICES)


def test_tensor_parallel_reason_and_placement() -> None:
    gpus = [GpuSlot(n, i, "A10", 24 * 1024) for n in ("n1", "n2") for i in range(2)]
    gpus.append(GpuSlot("n3", 0, "A10", 48 * 1024))
    big = ServiceDemand("tp", 38.5, gpu_count=2)
    p = plan("vram_based", gpus, [big], overcommit=False)
    assert dict(p.unplaced)["tp"] == (
        "needs 2 GPUs on one node with 38.5 GB free each; the most free on 2 GPUs of one node is "
        "24 GB each (n1 GPUs 0,1, 0 of 24 GB used)"
    )
    p = plan("vram_based", gpus, [big])
    assert dict(p.unplaced)["tp"] == (
        "needs 2 GPUs on one node with 38.5 GB each, more than any node's GPUs hold; the largest "
        "2 of one node have 24 GB each"
    )
    p = plan("balanced", gpus, [ServiceDemand("tp", 20, gpu_count=2)])
    assert p.placements[0].node == "n1" and p.placements[0].gpus == (0, 1)


def test_adjusted_budget_is_the_largest_half_gb_step_that_fits() -> None:
    gpus = [GpuSlot("n", 0, "A10", 10 * 1024)]
    p = plan("vram_based", gpus, [ServiceDemand("e", 16, min_gb=2.2)])
    assert p.placements[0].budget_gb == 10.0
    services = [ServiceDemand("a", 8.3), ServiceDemand("e", 16, min_gb=1.6)]
    p = plan("vram_based", gpus, services, [Pin("a", "n", (0,))])
    assert placed(p, "e").budget_gb == 1.6


def test_latency_critical_goes_to_fastest() -> None:
    gpus = [GpuSlot("a", 0, "slow", 80 * 1024, speed=1.0), GpuSlot("b", 0, "fast", 24 * 1024, 2.0)]
    services = [ServiceDemand("c", 10, latency_class="critical"), ServiceDemand("n", 10)]
    assert where(plan("latency_optimized", gpus, services)) == {"c": (0,), "n": (0,)}
    assert placed(plan("latency_optimized", gpus, services), "c").node == "b"


def test_balanced_local_search_swaps_off_the_most_utilised_gpu() -> None:
    gpus = [GpuSlot("a", 0, "g", 10 * 1024), GpuSlot("b", 0, "g", 10 * 1024)]
    services = [ServiceDemand("s5", 5), ServiceDemand("s4", 4)]
    services += [ServiceDemand(f"t{k}", 3) for k in range(3)]
    # Largest first alone gives 5+3 / 4+3+3 (100 %); swapping a 3 for the 4 gives 9 GB each.
    assert max(plan("vram_based", gpus, services).used_gb().values()) == 10.0
    p = plan("balanced", gpus, services)
    assert p.used_gb() == {("a", 0): 9.0, ("b", 0): 9.0}
    assert {x.service for x in p.placements if x.node == "a"} == {"s4", "s5"}
    assert not p.warnings
    # A pin is never moved by the local search, even when moving it would balance better.
    pinned = plan("balanced", gpus, services, [Pin("t0", "a", (0,)), Pin("t1", "a", (0,))])
    assert placed(pinned, "t0").node == "a" and placed(pinned, "t1").node == "a"


# ---- properties over random clusters ----------------------------------------------------------


@st.composite
def clusters(draw: st.DrawFn) -> tuple[list[GpuSlot], list[ServiceDemand], list[Pin]]:
    gpus = []
    for n in range(draw(st.integers(1, 6))):
        for i in range(draw(st.integers(1, 4))):
            mem = draw(st.sampled_from([4094, 16384, 24564, 49152, 81920]))
            gpus.append(
                GpuSlot(
                    f"n{n}",
                    i,
                    "g",
                    mem,
                    draw(st.sampled_from([1.0, 2.0])),
                    draw(st.booleans()) and draw(st.booleans()),
                    draw(st.sampled_from([0, 0, 0, 2048, 100_000])),
                )
            )
    services = []
    for k in range(draw(st.integers(0, 15))):
        vram = draw(st.floats(0.1, 60, allow_nan=False).map(lambda x: round(x, 2)))
        adjustable = draw(st.booleans())
        services.append(
            ServiceDemand(
                f"s{k}",
                vram,
                draw(st.sampled_from([1, 1, 1, 2, 4])),
                draw(st.sampled_from(["critical", "normal", "background"])),
                draw(st.booleans()),
                round(vram / 3, 2) if adjustable else None,
            )
        )
    pins = []
    for s in services:
        if draw(st.integers(0, 4)) == 0:
            node = draw(st.sampled_from(sorted({g.node for g in gpus})))
            idx = [g.index for g in gpus if g.node == node]
            chosen = draw(
                st.lists(st.sampled_from(idx), min_size=1, max_size=len(idx), unique=True)
            )
            budget = draw(st.none() | st.just(round(s.vram_gb / 2, 2)))
            pins.append(Pin(s.name, node, tuple(chosen), budget))
    return gpus, services, pins


PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(clusters(), st.sampled_from(STRATEGIES), st.booleans(), st.randoms(use_true_random=False))
def test_plan_properties(
    cluster: tuple[list[GpuSlot], list[ServiceDemand], list[Pin]],
    strategy: str,
    overcommit: bool,
    rnd: random.Random,
) -> None:
    gpus, services, pins = cluster
    p = plan(strategy, gpus, services, pins, overcommit=overcommit)
    total = {g.key: g.usable_mb / 1024 for g in gpus}
    lost = {g.key for g in gpus if g.lost}
    over = {(w.node, w.gpu) for w in p.warnings if w.kind == "combined_over_capacity"}
    for key, used in p.used_gb().items():
        if used > total[key] + 1e-9:
            assert key in over
    moved = {w.service for w in p.warnings if w.kind == "gpu_lost_moved"}
    pin_of = {x.service: x for x in pins}
    for x in p.placements:
        assert len(set(x.gpus)) == len(x.gpus)
        assert all((x.node, i) in total for i in x.gpus)
        pin = pin_of.get(x.service)
        if pin and x.service not in moved:
            assert (x.node, x.gpus) == (pin.node, pin.gpus)
            if pin.vram_budget_gb is not None:
                assert x.budget_gb == pin.vram_budget_gb
        else:
            assert not any((x.node, i) in lost for i in x.gpus)
            s = next(s for s in services if s.name == x.service)
            assert len(x.gpus) == s.gpu_count
            # what a strategy places fits each of its GPUs by usable size ...
            assert all(x.vram_gb <= total[(x.node, i)] + 1e-9 for i in x.gpus)
            # ... and, in strict mode, within the GPU's free room
            assert overcommit or all(
                (x.node, i) not in over
                or (x.node, i) in {(q.node, j) for q in pins for j in q.gpus}
                for i in x.gpus
            )
    if overcommit and strategy in ("vram_based", "latency_optimized", "balanced"):
        # over-commit leaves out only a service larger than every usable unit
        for name, _ in p.unplaced:
            s = next(s for s in services if s.name == name)
            floor = s.min_gb if s.min_gb is not None else s.vram_gb
            nodes = {g.node for g in gpus}
            fits = [
                n for n in nodes
                if sum(g.node == n and not g.lost and g.usable_mb / 1024 >= floor - 1e-9
                       for g in gpus) >= s.gpu_count
            ]  # fmt: skip
            assert not fits, (name, fits)
    for pin in pins:
        if pin.service not in moved:
            assert p.placement(pin.service) is not None
    names = [x.service for x in p.placements] + [n for n, _ in p.unplaced]
    assert sorted(names) == sorted(s.name for s in services)
    assert p == plan(strategy, gpus, services, pins, overcommit=overcommit)
    shuffled = list(services)
    rnd.shuffle(shuffled)
    g2, p2 = list(gpus), list(pins)
    rnd.shuffle(g2)
    rnd.shuffle(p2)
    assert p == plan(strategy, g2, shuffled, p2, overcommit=overcommit)


def test_optimal_keeps_its_wall_time_limit_building_included() -> None:
    """A clock that passes the limit while the model is built: the balanced plan, unproved."""
    pytest.importorskip("ortools")
    from hub.placement.engine import State
    from hub.placement.optimal import place_optimal

    ticks = iter(range(0, 10_000, 10))  # every look at the clock: 10 s later
    balanced = plan("balanced", seed_gpus(), SEED_SERVICES)
    state = State(seed_gpus())
    proved = place_optimal(state, SEED_SERVICES, 1.0, balanced.placements, lambda: next(ticks))
    assert proved is False
    assert state.finish().placements == balanced.placements


@pytest.mark.parametrize("overcommit", [True, False])
@pytest.mark.parametrize("count", [1, 2])
def test_isolation_taking_the_large_gpus_leaves_the_next_short_not_too_large(
    overcommit: bool, count: int
) -> None:
    """The large GPUs went to an isolated service: the next one is short of room there (it
    would fit them by size), never "larger than every GPU", and planning does not fail."""
    gpus = [GpuSlot(node, i, name, mib) for node, name, mib in
            (("a", "H100", 81920), ("b", "A5500", 24576)) for i in range(count)]  # fmt: skip
    services = [ServiceDemand("big", 70, count, isolation=True),
                ServiceDemand("mid", 40, count, isolation=True)]  # fmt: skip
    found = plan("isolation_first", gpus, services, overcommit=overcommit)
    assert [(p.service, p.node) for p in found.placements] == [("big", "a")]
    [(service, reason)] = found.unplaced
    assert service == "mid" and "free" in reason and "more than any" not in reason, reason
