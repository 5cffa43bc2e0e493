"""What the hub keeps of an agent's preflight and GPU processes: bounded, and whether each
process is gpufleet's, through the store and back to the API (old rows too)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import SQLModel, create_engine

from gpufleet.v1 import agent_link_pb2 as link_pb
from gpufleet.v1 import types_pb2
from hub import convert
from hub.store import Store
from hub.store.models import Gpu

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def hello(preflight: list[str]) -> link_pb.Hello:
    gpu = types_pb2.Gpu(index=0, uuid="GPU-0", name="A5500", memory_total_mb=24564,
                        processes=[types_pb2.GpuProcess(pid=10, used_memory_mb=18432,
                                                        managed=True),
                                   types_pb2.GpuProcess(pid=11, used_memory_mb=512)])  # fmt: skip
    return link_pb.Hello(node_name="gpu-a", agent_id="id-1", inventory=types_pb2.Inventory(
        probe="nvml", gpus=[gpu], preflight=preflight))  # fmt: skip


def test_preflight_is_cut_not_refused() -> None:
    lines = [f"problem {i}: fix it " + "x" * 900 for i in range(40)]
    record = convert.hello_from_proto(hello(lines), "peer")
    assert len(record.preflight) == convert.PREFLIGHT_LINES
    assert all(len(line) == convert.PREFLIGHT_CHARS for line in record.preflight)
    assert convert.hello_from_proto(hello(["a\nb\x00c"]), "peer").preflight == ("a bc",)


def test_preflight_and_managed_processes_round_trip_through_the_store() -> None:
    engine = create_engine("sqlite://")
    SQLModel.metadata.create_all(engine)
    store = Store(engine)
    store.register(convert.hello_from_proto(hello(["podman not found: install podman"]), "p"),
                   NOW)  # fmt: skip
    node, gpus = store.get_node("gpu-a") or (None, [])
    assert node is not None and gpus[0].processes == [[10, 18432, 1], [11, 512, 0]]
    shown = convert.node_to_proto(node, 1, gpus)
    assert list(shown.preflight) == ["podman not found: install podman"]
    assert [(p.pid, p.managed) for p in shown.gpus[0].processes] == [(10, True), (11, False)]

    inventory = types_pb2.Inventory(probe="nvml", gpus=hello([]).inventory.gpus)
    store.replace_inventory("gpu-a", *convert.inventory_from_proto(inventory))
    node, gpus = store.get_node("gpu-a") or (None, [])
    assert node is not None and node.preflight == []  # fixed on the host: gone at the hub

    assert node.id is not None
    old = Gpu(node_id=node.id, index=1, uuid="GPU-1", processes=[[12, 100]])  # before managed
    assert [(p.pid, p.managed) for p in convert.node_to_proto(node, 2, [old]).gpus[0].processes
            ] == [(12, False)]  # fmt: skip
