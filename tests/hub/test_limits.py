"""Sane ranges at the hub's edges: what agents send is refused naming the field, a bad row
never drops the other nodes' heartbeats, listings come in stable pages."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gpufleet.channel import PROTOCOL_VERSION
from gpufleet.v1 import agent_link_pb2 as link_pb
from gpufleet.v1 import types_pb2
from hub import convert, limits
from hub.store import GpuRecord, GpuTelemetryRecord, Store, migrate, sqlite_url
from hub.store.db import make_engine
from tests.hub.test_store import gpu, hello

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
HUGE = 2**64 - 1


def good_gpu(**fields: object) -> types_pb2.Gpu:
    values: dict[str, object] = {
        "index": 0, "uuid": "GPU-0", "name": "NVIDIA RTX A5500", "memory_total_mb": 24564,
        "memory_used_mb": 100, "compute_capability": "8.6",
    }  # fmt: skip
    return types_pb2.Gpu(**{**values, **fields})  # type: ignore[arg-type]


def agent_hello(*gpus: types_pb2.Gpu, **fields: object) -> link_pb.Hello:
    values: dict[str, object] = {
        "node_name": "gpu-a", "agent_id": "a" * 32, "hostname": "gpu-a",
        "versions": link_pb.Versions(protocol=PROTOCOL_VERSION, agent="0.1.0"),
        "inventory": types_pb2.Inventory(probe="static", gpus=list(gpus)),
    }  # fmt: skip
    return link_pb.Hello(**{**values, **fields})  # type: ignore[arg-type]


def test_a_sane_hello_converts() -> None:
    record = convert.hello_from_proto(agent_hello(good_gpu(temperature_c=61.5)), "ipv4:x")
    assert record.gpus[0].memory_total_mb == 24564 and record.gpus[0].temperature_c == 61.5


BAD_GPUS = [
    (good_gpu(memory_total_mb=HUGE), "GPU 0 memory_total_mb 18446744073709551615"),
    (good_gpu(memory_used_mb=HUGE), "GPU 0 memory_used_mb"),
    (good_gpu(memory_free_mb=HUGE), "GPU 0 memory_free_mb"),
    (good_gpu(index=4_000_000_000), "GPU index 4000000000"),
    (good_gpu(utilization_percent=101), "GPU 0 utilization_percent 101"),
    (good_gpu(temperature_c=float("nan")), "GPU 0 temperature_c nan"),
    (good_gpu(temperature_c=float("inf")), "GPU 0 temperature_c inf"),
    (good_gpu(power_draw_w=-1.0), "GPU 0 power_draw_w -1"),
    (good_gpu(power_limit_w=float("-inf")), "GPU 0 power_limit_w -inf"),
    (good_gpu(name="x" * 129), "GPU 0 name is 129 characters long"),
    (good_gpu(uuid="GPU-\x00"), "GPU 0 uuid 'GPU-\\x00' has control characters"),
    (good_gpu(pci_bus_id="0" * 33), "GPU 0 pci_bus_id"),
    (good_gpu(driver_version="9" * 33), "GPU 0 driver_version"),
    (good_gpu(processes=[types_pb2.GpuProcess(pid=2**32 - 1)]), "GPU 0 process pid"),
    (good_gpu(processes=[types_pb2.GpuProcess(pid=1, used_memory_mb=HUGE)]), "used_memory_mb"),
    (good_gpu(processes=[types_pb2.GpuProcess(pid=1)] * 1025), "lists 1025 processes"),
]


@pytest.mark.parametrize(("bad", "named"), BAD_GPUS)
def test_a_bad_gpu_value_is_refused_naming_its_field(bad: types_pb2.Gpu, named: str) -> None:
    with pytest.raises(convert.InvalidHello) as refused:
        convert.hello_from_proto(agent_hello(bad), "ipv4:x")
    assert str(refused.value).startswith("hello refused: ") and named in str(refused.value)
    # The same GPU in a heartbeat's changed inventory.
    with pytest.raises(convert.InvalidHello, match="inventory refused"):
        convert.inventory_from_proto(types_pb2.Inventory(probe="static", gpus=[bad]))


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"hostname": "h" * 254}, "hostname is 254 characters long: at most 253"),
        ({"agent_id": "a" * 65}, "agent_id"),
        ({"versions": link_pb.Versions(protocol=PROTOCOL_VERSION, agent="v\n1")}, "agent_version"),
        ({"labels": {f"k{i}": "v" for i in range(65)}}, "labels has 65 labels: at most 64"),
        ({"labels": {"role": "x" * 254}}, "labels 'role' is 254 characters long"),
        ({"labels": {"": "x"}}, "labels has an empty key"),
    ],
)
def test_bad_hello_strings_are_refused(fields: dict[str, object], named: str) -> None:
    with pytest.raises(convert.InvalidHello, match="hello refused") as refused:
        convert.hello_from_proto(agent_hello(good_gpu(), **fields), "ipv4:x")
    assert named in str(refused.value)


def test_free_text_is_cut_not_refused() -> None:
    inventory = types_pb2.Inventory(probe="nvml", probe_error="e\x07" * 5000)
    record = convert.hello_from_proto(agent_hello(inventory=inventory), "ipv4:x")
    assert record.probe_error == "e" * 500


@pytest.mark.parametrize(
    ("sample", "named"),
    [
        (types_pb2.GpuTelemetry(index=0, memory_used_mb=HUGE), "GPU 0 memory_used_mb"),
        (types_pb2.GpuTelemetry(index=0, power_draw_w=float("nan")), "power_draw_w nan"),
        (types_pb2.GpuTelemetry(index=0, temperature_c=-300.0), "temperature_c -300"),
        (types_pb2.GpuTelemetry(index=999), "GPU index 999 is out of range: 0..255"),
    ],
)
def test_bad_telemetry_is_refused(sample: types_pb2.GpuTelemetry, named: str) -> None:
    with pytest.raises(convert.InvalidHello, match="heartbeat refused") as refused:
        convert.telemetry_from_proto(sample)
    assert named in str(refused.value)


def test_operator_limits_and_page_tokens() -> None:
    assert limits.limit("--limit", 0, 20) == 20
    assert limits.page_size(0) == limits.page_size(500) == 500
    assert limits.page_size(5000) == 5000
    with pytest.raises(limits.OutOfBounds, match=r"page_size 5001 is out of range: 1\.\.5000"):
        limits.page_size(5001)
    token = limits.Page.token("gpu-a", 3)
    assert limits.Page.key(token, 2) == ("gpu-a", "3") and limits.Page.key("", 2) == ()
    for bad in ("nonsense", "!!", limits.Page.token("only-one"), "x" * 2000):
        with pytest.raises(limits.OutOfBounds, match="invalid page_token"):
            limits.Page.key(bad, 2)


@pytest.fixture
def store(tmp_path: Path, db_url: str | None) -> Iterator[Store]:
    engine = make_engine(db_url or sqlite_url(tmp_path))
    migrate(engine)
    yield Store(engine)
    engine.dispose()


def test_one_bad_row_never_drops_the_other_nodes_heartbeats(store: Store) -> None:
    """The edge refuses such values; should one still reach the store (an older hub's row,
    a bug), the batch writes every other node."""
    for name in ("gpu-a", "gpu-b", "gpu-c"):
        store.register(hello(name, gpu(0)), T0)
    later = T0 + timedelta(minutes=1)
    seen = dict.fromkeys(("gpu-a", "gpu-b", "gpu-c"), later)
    failed = store.record_heartbeats(seen, {
        "gpu-a": (GpuTelemetryRecord(0, memory_used_mb=500),),
        "gpu-b": (GpuTelemetryRecord(0, memory_used_mb=HUGE),),
        "gpu-c": (GpuTelemetryRecord(0, memory_used_mb=700),),
    })  # fmt: skip
    assert failed == ["gpu-b"]
    for name, used in (("gpu-a", 500), ("gpu-c", 700)):
        found = store.get_node(name)
        assert found is not None
        node, [row] = found
        assert row.memory_used_mb == used
        assert node.last_seen is not None and node.last_seen.replace(tzinfo=UTC) == later
    found = store.get_node("gpu-b")
    assert found is not None and found[1][0].memory_used_mb == 0


def test_listings_come_in_stable_pages(store: Store) -> None:
    names = [f"gpu-{i:03d}" for i in range(23)]
    for name in reversed(names):
        store.register(hello(name, *(gpu(i) for i in range(3))), T0)
    pages, after = [], ""
    while page := store.list_nodes(after, 5):
        pages.append([node.name for node, count in page if count == 3])
        after = page[-1][0].name
    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    assert [name for page in pages for name in page] == names
    gpus: list[tuple[str, int]] = []
    key: tuple[str, int] = ("", -1)
    while rows := store.list_gpus(key, 7):
        gpus += [(node.name, row.index) for node, row in rows]
        key = gpus[-1]
    assert gpus == [(name, i) for name in names for i in range(3)]
    assert len(store.list_nodes()) == 23 and len(store.list_gpus()) == 69


def test_gpu_record_type_is_the_stores() -> None:
    assert isinstance(convert.gpu_from_proto(good_gpu()), GpuRecord)


@pytest.mark.parametrize("budget", [float("nan"), float("inf"), 0.0, -1.0, 1e9])
def test_a_vram_budget_is_finite_positive_and_sane(budget: float) -> None:
    problem = limits.budget_problem(budget)
    assert problem is not None and problem.startswith("--vram-budget must be more than 0")
    assert limits.budget_problem(24.0) is None


def test_a_listing_of_large_items_stops_under_the_message_limit() -> None:
    from gpufleet.v1 import hub_pb2

    operation = hub_pb2.Operation(id="op", nodes=[hub_pb2.NodeResult(node=f"n{i:04d}",
                                  message="m" * 200) for i in range(1000)])  # fmt: skip
    kept = limits.within_reply([operation] * 500)
    size = hub_pb2.ListOperationsResponse(operations=kept).ByteSize()
    assert 0 < len(kept) < 500 and size <= limits.REPLY_BYTES
    assert limits.within_reply([operation], budget=10) == [operation]  # one always comes
    assert len(limits.within_reply([operation] * 3)) == 3
