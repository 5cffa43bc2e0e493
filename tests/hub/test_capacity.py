"""Capacity warnings of `switch --check`: what a node's GPUs cannot hold, one line each, case by
case; the switch reports them first and carries on; the database gives the GPUs and the
assignments in force."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from typing import Any, cast

from hub.configs import Configuration, load_configuration
from hub.ops.batches import Outcome
from hub.ops.capacity import Demand, NodeGpu, check, demands, warnings
from hub.ops.kind import NodeRun
from hub.ops.kinds import StoredCapacity, SwitchKind
from hub.ops.remote import RemoteAgent
from hub.states import NodeState
from hub.store import Database, GpuRecord, NodeHello, Store
from hub.store.assignments import Assigned, AssignmentStore
from hub.store.op_rows import MAX_WARNINGS
from hub.store.operations import Event, OperationRecord, OperationStore
from tests.support.procs import REPO

BIG_CHAT = load_configuration(REPO / "configs" / "big-chat.yaml")
IMAGE_CHAT = load_configuration(REPO / "configs" / "image-chat.yaml")
A5500, A400, H100 = 24564, 4094, 81559  # MiB, as the drivers report them
WORKSTATION = [NodeGpu(0, A5500), NodeGpu(1, A400)]
T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def with_services(config: Configuration, *services: tuple[str, float, int]) -> Configuration:
    template = config.services[0]
    specs = tuple(dataclasses.replace(template, name=n, vram_gb=v, gpu_count=c)
                  for n, v, c in services)  # fmt: skip
    return dataclasses.replace(config, services=specs)


# -- one case each -------------------------------------------------------------------------------


def test_a_node_without_gpus() -> None:
    assert check(BIG_CHAT, "gpu-c", [], []) == [
        "llm needs 2 GPUs with 72 GB each; gpu-c has no GPUs"
    ]


def test_fewer_gpus_than_the_service_spans() -> None:
    assert check(BIG_CHAT, "gpu-c", [NodeGpu(0, H100)], []) == [
        "llm needs 2 GPUs with 72 GB each; gpu-c has 1 GPU (GPU 0: 79.6 GB)"
    ]


def test_enough_gpus_but_too_small() -> None:
    assert check(BIG_CHAT, "gpu-b", WORKSTATION, []) == [
        "llm needs 2 GPUs with 72 GB each; gpu-b has none with 72 GB or more"
        " (GPU 0: 24 GB, GPU 1: 4 GB)"
    ]
    one_large = [NodeGpu(0, A5500), NodeGpu(1, H100)]
    assert check(BIG_CHAT, "gpu-b", one_large, []) == [
        "llm needs 2 GPUs with 72 GB each; gpu-b has 1 with 72 GB or more"
        " (GPU 0: 24 GB, GPU 1: 79.6 GB)"
    ]


def test_one_gpu_service_larger_than_the_largest_gpu() -> None:
    config = with_services(BIG_CHAT, ("llm", 72, 1))
    assert check(config, "gpu-c", WORKSTATION, []) == [
        "llm needs 72 GB on one GPU; the largest GPU of gpu-c has 24 GB (GPU 0)"
    ]


def test_what_fits_gives_no_warning() -> None:
    assert check(BIG_CHAT, "gpu-h", [NodeGpu(i, H100) for i in range(8)], []) == []
    assert check(with_services(BIG_CHAT, ("llm", 21.7, 1)), "ws", WORKSTATION, []) == []
    assert check(with_services(BIG_CHAT, ("cpu", 0, 0)), "none", [], []) == []


def test_each_fits_alone_but_not_together() -> None:
    config = with_services(BIG_CHAT, ("llm", 21.7, 1), ("vision", 6.8, 1))
    assert check(config, "ws", WORKSTATION, []) == [
        "the services need 28.5 GB together (llm 21.7, vision 6.8); the GPUs of ws have 28 GB"
        " (GPU 0: 24 GB, GPU 1: 4 GB)"
    ]


def test_lost_gpus_do_not_count() -> None:
    config = with_services(BIG_CHAT, ("llm", 20, 1))
    assert check(config, "ws", [NodeGpu(0, A5500, lost=True)], []) == [
        "llm needs 20 GB on one GPU; ws has no usable GPU (GPU 0 lost)"
    ]


# -- assignments in force ------------------------------------------------------------------------


def assigned(service: str, node: str, gpus: tuple[int, ...], budget: float | None = None
             ) -> Assigned:  # fmt: skip
    return Assigned(service, node, gpus, 0.0, budget, "balanced")


def test_with_assignments_a_node_runs_only_its_own_services() -> None:
    config = with_services(IMAGE_CHAT, ("llm", 60, 1), ("embeddings", 2, 1), ("cpu", 0, 0))
    force = [assigned("llm", "big", (0,)), assigned("embeddings", "ws", (1,))]
    assert demands(config, "ws", force) == [Demand("embeddings", 2, 1, (1,))]
    assert check(config, "ws", WORKSTATION, force) == []  # the 60 GB llm runs elsewhere
    assert check(config, "ws", WORKSTATION, []) == [
        "llm needs 60 GB on one GPU; the largest GPU of ws has 24 GB (GPU 0)"
    ]


def test_assigned_gpus_that_are_missing_lost_or_too_small() -> None:
    config = with_services(IMAGE_CHAT, ("llm", 21.7, 1), ("vision", 6.8, 1))
    assert check(config, "ws", WORKSTATION, [assigned("llm", "ws", (3,))]) == [
        "llm is assigned to GPU 3 of ws; ws has no GPU 3 (its GPUs: 0, 1):"
        " `hubctl assign preview` places it afresh"
    ]
    lost = [NodeGpu(0, A5500, lost=True), NodeGpu(1, A400)]
    assert check(config, "ws", lost, [assigned("llm", "ws", (0,))]) == [
        "llm is assigned to GPU 0 of ws; GPU 0 is lost"
    ]
    assert check(config, "ws", WORKSTATION, [assigned("vision", "ws", (1,))]) == [
        "vision needs 6.8 GB on each of GPU 1 of ws; GPU 1: 4 GB"
    ]
    # An adjusted budget is what the service gets: 3.5 GB fits the 4 GB card.
    assert check(config, "ws", WORKSTATION, [assigned("vision", "ws", (1,), 3.5)]) == []


def test_services_assigned_to_one_gpu_over_commit_it() -> None:
    config = with_services(IMAGE_CHAT, ("llm", 21.7, 1), ("clip", 1.2, 1), ("yolo", 1.5, 1))
    force = [assigned(name, "ws", (0,)) for name in ("llm", "clip", "yolo")]
    assert check(config, "ws", WORKSTATION, force) == [
        "the services assigned to GPU 0 of ws need 24.4 GB together"
        " (llm 21.7, clip 1.2, yolo 1.5); it has 24 GB"
    ]


def test_every_line_names_service_node_and_figures() -> None:
    found = warnings("n", [], [Demand("a", 1, 1), Demand("b", 2.25, 3)])
    assert found == [
        "a needs 1 GB on one GPU; n has no GPUs",
        "b needs 3 GPUs with 2.25 GB each; n has no GPUs",
    ]


# -- in a switch -----------------------------------------------------------------------------


def run_switch(capacity: Any, check_mode: bool = True) -> tuple[Outcome, list[tuple[str, str]]]:
    events: list[tuple[str, str]] = []
    states: list[tuple[NodeState, str, str]] = []
    kind = SwitchKind(BIG_CHAT, {}, capacity=capacity)
    run = NodeRun("gpu-c", cast(RemoteAgent, None), None,
                  lambda step, message: events.append((step, message)),
                  lambda *state: states.append(state), check_mode)  # fmt: skip
    outcome = asyncio.run(kind.run_node(run))
    return outcome, events


def test_a_check_reports_the_warnings_first_and_still_says_what_it_would_do() -> None:
    async def capacity(config: Configuration, node: str) -> list[str]:
        return check(config, node, [], [])

    outcome, events = run_switch(capacity)
    assert outcome == Outcome("changed", "would start big-chat, wait until healthy")
    assert events == [("warning", "llm needs 2 GPUs with 72 GB each; gpu-c has no GPUs")]


def test_a_capacity_check_that_breaks_never_stops_the_switch() -> None:
    async def broken(config: Configuration, node: str) -> list[str]:
        raise RuntimeError("database gone")

    outcome, events = run_switch(broken)
    assert outcome.result == "changed" and events == []


# -- from the database -------------------------------------------------------------------------


def gpu(index: int, mib: int) -> GpuRecord:
    return GpuRecord(index=index, uuid=f"GPU-{index}", name="g", memory_total_mb=mib)


def stored(capacity: StoredCapacity, config: Configuration, node: str) -> list[str]:
    """The warnings StoredCapacity answers with (a future, awaited in a loop)."""

    async def ask() -> list[str]:
        return await capacity(config, node)

    return asyncio.run(ask())


def test_stored_gpus_and_assignments_in_force(db: Database) -> None:
    store = Store(db.engine)
    store.register(NodeHello("ws", "id", "ws", "127.0.0.1", "1", "static", "",
                             gpus=(gpu(0, A5500), gpu(1, A400))), T0)  # fmt: skip
    store.register(NodeHello("bare", "id2", "bare", "127.0.0.1", "1", "none", ""), T0)
    capacity = StoredCapacity(db)
    assert stored(capacity, BIG_CHAT, "bare") == [
        "llm needs 2 GPUs with 72 GB each; bare has no GPUs"
    ]
    assert stored(capacity, BIG_CHAT, "ws") == [
        "llm needs 2 GPUs with 72 GB each; ws has none with 72 GB or more"
        " (GPU 0: 24 GB, GPU 1: 4 GB)"
    ]
    AssignmentStore(db.engine).put_in_force(
        "big-chat", [Assigned("llm", "elsewhere", (0, 1), 72, None, "balanced")], T0
    )
    assert stored(capacity, BIG_CHAT, "ws") == []  # assigned to another node


def test_a_warning_event_is_kept_with_the_nodes_result(db: Database) -> None:
    ops = OperationStore(db.engine)
    ops.create(OperationRecord("op1", "switch", T0, "big-chat", check=True), ["ws", "bare"])
    ops.add_event("op1", Event(1, T0, "ws", "begin", "started"))
    for seq in range(2, 2 + MAX_WARNINGS + 3):
        ops.add_event("op1", Event(seq, T0, "ws", "warning", f"w{seq}"))
    ops.add_event("op1", Event(99, T0, "", "warning", "not a node's"))
    ops.node_result("op1", "ws", "changed", "would start big-chat", T0, T0)
    found = ops.get("op1")
    assert found is not None
    ws, bare = found.nodes
    assert ws.result == "changed" and ws.warnings == tuple(f"w{i}" for i in range(2, 22))
    assert bare.warnings == ()
    assert len([e for e in ops.events("op1") if e.step == "warning"]) == MAX_WARNINGS + 4


def test_vram_of_processes_gpufleet_does_not_manage_is_not_free(db: Database) -> None:
    store = Store(db.engine)
    # GPU 0: 24 GB, of which an unmanaged process holds 12 GB; gpufleet's own (1) counts not.
    busy = dataclasses.replace(gpu(0, A5500), processes=((4242, 12288, 0), (77, 8000, 1)))
    store.register(NodeHello("ws", "id", "ws", "127.0.0.1", "1", "static", "", gpus=(busy,)), T0)
    chat = with_services(BIG_CHAT, ("llm", 16, 1))
    assert stored(StoredCapacity(db), chat, "ws") == [
        "llm needs 16 GB on one GPU; the largest GPU of ws has 12 GB (other processes hold 12 "
        "of 24 GB) (GPU 0)"
    ]
    assert warnings("ws", [NodeGpu(0, A5500, foreign_mb=2048)], [Demand("llm", 16, 1)]) == []
