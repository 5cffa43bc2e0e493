"""GetGpuUsage over gRPC: the mixin in a Hub servicer served by a grpc.aio server on loopback,
on a real database (SQLite, and PostgreSQL where the tests have it): hours and raw samples,
paging, filters by node name and label, and refusals."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest

from gpufleet.v1 import hub_pb2, hub_pb2_grpc
from hub.store import Database, NodeHello, Store, migrate, sqlite_url
from hub.store import usage as usage_module
from hub.store.usage import Sample, UsageStore
from hub.telemetry import GpuUsageApi, Retention

NOW = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)
HOUR = int(NOW.timestamp()) - 1800  # the current hour's start


class UsageHub(GpuUsageApi, hub_pb2_grpc.HubServicer):  # type: ignore[misc]
    def __init__(self, db: Database, retention: Retention) -> None:
        self.db = db
        self.usage = UsageStore(db.engine)
        self.retention = retention


@contextlib.asynccontextmanager
async def served(db: Database) -> AsyncIterator[Any]:
    server = grpc.aio.server()
    hub = UsageHub(db, Retention(raw=timedelta(hours=2), keep=timedelta(days=7)))
    hub_pb2_grpc.add_HubServicer_to_server(hub, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield hub_pb2_grpc.HubStub(channel)  # type: ignore[no-untyped-call]
    finally:
        await server.stop(0)


def hello(name: str, **labels: str) -> NodeHello:
    return NodeHello(name, f"id-{name}", name, "ipv4:127.0.0.1:1", "0.1.0", "static", "", labels)


def fill(db: Database) -> None:
    """Three nodes of two GPUs: two folded hours and the open hour, a sample a minute."""
    store, usage = Store(db.engine), UsageStore(db.engine)
    store.register(hello("gpu-a", role="chat"), NOW)
    store.register(hello("gpu-b", role="coder"), NOW)
    store.register(hello("gpu-c", role="chat"), NOW)
    samples: list[Sample] = [
        (node, gpu, at_s, "ok", (at_s // 60) % 100, 1000 * (gpu + 1), 50.0, 200.0)
        for node in ("gpu-a", "gpu-b", "gpu-c")
        for gpu in (0, 1)
        for at_s in range(HOUR - 7200, HOUR + 1200, 60)
    ]
    usage.add_samples(samples)
    usage.fold(0, HOUR + 1200)


@pytest.fixture
def db(tmp_path: Path, db_url: str | None) -> Iterator[Database]:
    database = Database(db_url or sqlite_url(tmp_path))
    migrate(database.engine)
    fill(database)
    yield database
    database.close()


def since(moment_s: int) -> Any:
    request = hub_pb2.GpuUsageRequest()
    request.since.FromSeconds(moment_s)
    return request.since


async def every_page(stub: Any, request: hub_pb2.GpuUsageRequest) -> list[Any]:
    found, pages = [], 0
    while True:
        reply = await stub.GetGpuUsage(request)
        pages += 1
        found += list(reply.usage)
        if not reply.next_page_token:
            return [pages, found]
        request.page_token = reply.next_page_token


def keys(rows: list[Any]) -> list[tuple[int, str, int]]:
    return [(r.start.seconds, r.node, r.index) for r in rows]


def test_hours_paged_in_key_order_with_the_open_hour(db: Database) -> None:
    async def scenario() -> None:
        async with served(db) as stub:
            whole = await stub.GetGpuUsage(hub_pb2.GpuUsageRequest(since=since(HOUR - 7200)))
            assert (whole.raw_window_s, whole.keep_s, whole.next_page_token) == (7200, 604800, "")
            expected = [(h, n, g) for h in (HOUR - 7200, HOUR - 3600, HOUR)
                        for n in ("gpu-a", "gpu-b", "gpu-c") for g in (0, 1)]  # fmt: skip
            assert keys(list(whole.usage)) == expected
            folded, current = whole.usage[6], whole.usage[12]  # gpu-a's GPU 0
            minutes = [(s // 60) % 100 for s in range(HOUR - 3600, HOUR, 60)]
            assert (folded.span_s, folded.samples) == (3600, 60)
            assert folded.utilization_max == max(minutes)
            assert folded.utilization_avg == pytest.approx(sum(minutes) / 60)
            assert folded.memory_used_avg_mb == folded.memory_used_max_mb == 1000
            assert (folded.temperature_max_c, folded.power_avg_w) == (50.0, 200.0)
            assert (current.span_s, current.samples) == (3600, 20)  # the current hour, so far
            pages, paged = await every_page(
                stub, hub_pb2.GpuUsageRequest(page_size=4, since=since(HOUR - 7200))
            )
            assert (pages, keys(paged)) == (5, expected)

    asyncio.run(scenario())


def test_filters_by_name_label_since_and_raw(db: Database) -> None:
    async def scenario() -> None:
        async with served(db) as stub:
            named = await stub.GetGpuUsage(
                hub_pb2.GpuUsageRequest(names=["gpu-b"], since=since(HOUR))
            )
            assert keys(list(named.usage)) == [(HOUR, "gpu-b", 0), (HOUR, "gpu-b", 1)]
            overlapping = await stub.GetGpuUsage(  # the hour that holds `since` is listed
                hub_pb2.GpuUsageRequest(names=["gpu-b"], since=since(HOUR - 10))
            )
            assert [r.start.seconds for r in overlapping.usage] == [HOUR - 3600] * 2 + [HOUR] * 2
            request = hub_pb2.GpuUsageRequest(selector=["role=chat"], page_size=3,
                                              since=since(HOUR - 3600))  # fmt: skip
            pages, chat = await every_page(stub, request)
            assert {r.node for r in chat} == {"gpu-a", "gpu-c"} and len(chat) == 8 and pages == 3
            raw = await stub.GetGpuUsage(
                hub_pb2.GpuUsageRequest(names=["gpu-c"], raw=True, since=since(HOUR + 1080))
            )
            assert keys(list(raw.usage)) == [
                (HOUR + s, "gpu-c", g) for s in (1080, 1140) for g in (0, 1)]  # fmt: skip
            assert (raw.usage[0].span_s, raw.usage[0].samples) == (0, 1)
            assert raw.usage[0].utilization_avg == raw.usage[0].utilization_max
            default = await stub.GetGpuUsage(hub_pb2.GpuUsageRequest(names=["gpu-a"]))
            assert len(default.usage) == 6  # the last 24 hours: all three of each GPU

    asyncio.run(scenario())


def test_a_label_filter_scans_a_bounded_page_and_continues(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A selector that matches one node in three reads at most SCAN_ROWS rows a page: short
    pages (even empty ones) whose tokens continue where the scan stopped, all rows in all."""
    monkeypatch.setattr(usage_module, "SCAN_ROWS", 50)

    async def scenario() -> None:
        async with served(db) as stub:
            request = hub_pb2.GpuUsageRequest(raw=True, since=since(HOUR - 7200))
            _, every = await every_page(stub, request)
            request.selector.append("role=coder")
            request.page_token = ""
            pages, coder = await every_page(stub, request)
            assert keys(coder) == [key for key in keys(every) if key[1] == "gpu-b"]
            assert len(every) == 840 and pages >= 840 // 50

    asyncio.run(scenario())


def test_a_page_is_read_while_the_writer_is_busy(db: Database) -> None:
    """Listings run on the reader threads, not behind the writes of heartbeats."""

    async def scenario() -> None:
        release = threading.Event()
        db.submit(release.wait, 30)  # a long write on the database thread
        try:
            async with served(db) as stub:
                reply = await asyncio.wait_for(
                    stub.GetGpuUsage(hub_pb2.GpuUsageRequest(since=since(HOUR - 7200))), 10
                )
                assert len(reply.usage) == 18
        finally:
            release.set()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("request_", "fragment"),
    [
        (hub_pb2.GpuUsageRequest(page_token="nonsense"), "invalid page_token"),
        (hub_pb2.GpuUsageRequest(page_size=100_000), "page_size 100000 is out of range"),
        (hub_pb2.GpuUsageRequest(selector=["=x"]), "invalid label selector '=x'"),
        (hub_pb2.GpuUsageRequest(names=["x"] * 1001), "names has 1001 nodes: at most 1000"),
        (hub_pb2.GpuUsageRequest(names=["a\nb"]), "control characters"),
    ],
    ids=["token", "size", "selector", "names", "name"],
)
def test_bad_requests_are_refused_with_one_line(
    db: Database, request_: hub_pb2.GpuUsageRequest, fragment: str
) -> None:
    async def scenario() -> None:
        async with served(db) as stub:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.GetGpuUsage(request_)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert fragment in (caught.value.details() or "")

    asyncio.run(scenario())
