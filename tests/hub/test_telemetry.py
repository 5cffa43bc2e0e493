"""GPU telemetry history (issue 18) on a real database (SQLite, and PostgreSQL where the tests
have it): the recorder's batches and bounded buffer, hourly folding (averages and maxima across
an hour boundary, idempotent, late samples), pruning by age, and the retention of the other
growing tables."""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, inspect, select
from sqlmodel import Session, SQLModel

from hub.store import Database, GpuTelemetryRecord, migrate, sqlite_url
from hub.store.models import Node, NodeEvent, NodeTransition, Operation, OperationEvent
from hub.store.trust import AuditEntry
from hub.store.usage import SAMPLE, USAGE, Sample, Usage, UsageStore
from hub.telemetry import Downsampler, Retention, TelemetryRecorder
from hub.telemetry.policy import BadDuration, argument, duration

H10 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)  # an hour's start
S10 = int(H10.timestamp())


@pytest.fixture
def db(tmp_path: Path, db_url: str | None) -> Iterator[Database]:
    database = Database(db_url or sqlite_url(tmp_path))
    migrate(database.engine)
    yield database
    database.close()


@pytest.fixture
def usage(db: Database) -> UsageStore:
    return UsageStore(db.engine)


def sample(node: str, gpu: int, at_s: int, util: int | None = 0, mem: int = 0,
           temp: float | None = None, power: float | None = None) -> Sample:  # fmt: skip
    return (node, gpu, at_s, "ok", util, mem, temp, power)


OPERATION = Operation.__table__  # type: ignore[attr-defined]
EVENT = OperationEvent.__table__  # type: ignore[attr-defined]


def count(db: Database, model: type[SQLModel]) -> int:
    table = model.__table__  # type: ignore[attr-defined]
    with db.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar() or 0)


def raw_count(usage: UsageStore) -> int:
    with usage.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(SAMPLE)).scalar() or 0)


def hours(usage: UsageStore) -> list[Usage]:
    return usage.usage(0)


def hour(usage: UsageStore, start: int, node: str = "gpu-a") -> Usage:
    [found] = [row for row in hours(usage) if (row.start_s, row.node) == (start, node)]
    return found


def folded_rows(usage: UsageStore) -> list[tuple[object, ...]]:
    with usage.engine.connect() as connection:
        query = select(USAGE).order_by(USAGE.c.hour_s, USAGE.c.node, USAGE.c.gpu)
        return [tuple(row) for row in connection.execute(query)]


def test_the_migration_builds_keyed_tables(usage: UsageStore) -> None:
    found = inspect(usage.engine)
    assert found.get_pk_constraint("gpu_sample")["constrained_columns"] == ["at_s", "node", "gpu"]
    assert found.get_pk_constraint("gpu_usage")["constrained_columns"] == ["hour_s", "node", "gpu"]
    assert found.get_indexes("gpu_sample") == found.get_indexes("gpu_usage") == []


# -- the recorder ------------------------------------------------------------------------------


def beat(*utils: int) -> tuple[GpuTelemetryRecord, ...]:
    return tuple(GpuTelemetryRecord(i, utilization_percent=u, memory_used_mb=100 * i,
                                    temperature_c=40.0 + i, power_draw_w=100.0)
                 for i, u in enumerate(utils))  # fmt: skip


def test_the_recorder_writes_one_batch_per_flush(db: Database, usage: UsageStore) -> None:
    recorder = TelemetryRecorder(db, usage, flush_s=3600)
    recorder.record("gpu-a", beat(10, 20), H10)
    recorder.record("gpu-b", beat(30), H10 + timedelta(seconds=5))
    assert raw_count(usage) == 0 and recorder.buffered == 3  # nothing written before a flush
    assert recorder.flush() == 3 and recorder.buffered == 0
    asyncio.run(db.call(lambda: None))  # the database thread is past the batch
    assert raw_count(usage) == 3 and recorder.written == 3
    [b] = usage.usage(0, raw=True, names=["gpu-b"])
    assert (b.gpu, b.start_s, b.utilization_max, b.temperature_max_c) == (0, S10 + 5, 30, 40.0)
    assert recorder.flush() == 0  # nothing buffered: nothing queued


def test_one_batch_waits_at_a_time_and_the_buffer_drops_its_oldest(
    db: Database, usage: UsageStore
) -> None:
    recorder = TelemetryRecorder(db, usage, flush_s=3600, max_buffered=4)
    release = threading.Event()
    db.submit(release.wait, 30)  # the database thread is busy: a slow disk
    recorder.record("gpu-a", beat(1), H10)
    assert recorder.flush() == 1  # queued behind the slow write
    for second in range(1, 7):  # six samples into a buffer of four
        recorder.record("gpu-a", beat(second * 10), H10 + timedelta(seconds=second))
    assert recorder.flush() == 0, "a second batch was queued while the first waits"
    assert (recorder.buffered, recorder.dropped) == (4, 2)
    release.set()
    asyncio.run(db.call(lambda: None))
    assert recorder.flush() == 4
    asyncio.run(db.call(lambda: None))
    kept = [row.utilization_max for row in usage.usage(0, raw=True)]
    assert kept == [1, 30, 40, 50, 60]  # the two oldest of the six were dropped


def test_a_second_sample_in_the_same_second_is_skipped(usage: UsageStore) -> None:
    usage.add_samples([sample("gpu-a", 0, S10, util=5)])
    usage.add_samples([sample("gpu-a", 0, S10, util=99), sample("gpu-a", 1, S10, util=7)])
    assert [(r.gpu, r.utilization_max) for r in usage.usage(0, raw=True)] == [(0, 5), (1, 7)]


# -- folding -----------------------------------------------------------------------------------


def across_the_hour() -> list[Sample]:
    """GPU 0 of gpu-a around 11:00: two samples in hour 10, three in hour 11."""
    return [
        sample("gpu-a", 0, S10 + 3540, util=10, mem=1000, temp=50.0, power=100.0),
        sample("gpu-a", 0, S10 + 3599, util=30, mem=3000, temp=70.0, power=300.0),
        sample("gpu-a", 0, S10 + 3600, util=None, mem=500, temp=60.0, power=None),
        sample("gpu-a", 0, S10 + 3660, util=80, mem=700, temp=65.5, power=250.0),
        sample("gpu-a", 0, S10 + 7199, util=40, mem=600, temp=61.0, power=150.0),
        sample("gpu-b", 3, S10 + 10, util=100, mem=20000, temp=None, power=None),
    ]


def test_hours_average_and_maximise_their_own_samples(usage: UsageStore) -> None:
    usage.add_samples(across_the_hour())
    assert usage.fold(0, S10 + 7200) == 6  # samples
    ten, other, eleven = hours(usage)  # by hour, node, GPU
    assert (ten.node, ten.gpu, ten.start_s, ten.span_s, ten.samples) == ("gpu-a", 0, S10, 3600, 2)
    assert (ten.utilization_avg, ten.utilization_max) == (20.0, 30)
    assert (ten.memory_used_avg_mb, ten.memory_used_max_mb) == (2000.0, 3000)
    assert (ten.temperature_max_c, ten.power_avg_w) == (70.0, 200.0)
    assert (eleven.start_s, eleven.samples) == (S10 + 3600, 3)
    assert (eleven.utilization_avg, eleven.utilization_max) == (60.0, 80)  # None is no sample
    assert (eleven.memory_used_avg_mb, eleven.memory_used_max_mb) == (600.0, 700)
    assert (eleven.temperature_max_c, eleven.power_avg_w) == (65.5, 200.0)
    assert (other.node, other.gpu, other.samples, other.utilization_avg) == ("gpu-b", 3, 1, 100.0)
    assert (other.temperature_max_c, other.power_avg_w) == (None, None)


def test_an_hour_folded_slice_by_slice_adds_up(usage: UsageStore) -> None:
    usage.add_samples(across_the_hour())
    assert usage.fold(0, S10 + 3601) == 4  # hour 10, and 11:00:00 (no utilization, no power)
    eleven = hour(usage, S10 + 3600)
    assert (eleven.samples, eleven.utilization_avg, eleven.power_avg_w) == (1, None, None)
    assert usage.fold(S10 + 3601, S10 + 7200) == 2
    eleven = hour(usage, S10 + 3600)
    assert (eleven.samples, eleven.utilization_avg, eleven.utilization_max) == (3, 60.0, 80)
    assert (eleven.memory_used_avg_mb, eleven.memory_used_max_mb) == (600.0, 700)
    assert (eleven.temperature_max_c, eleven.power_avg_w) == (65.5, 200.0)
    assert usage.mark() == S10 + 7200


def test_folding_again_counts_nothing_twice(usage: UsageStore) -> None:
    usage.add_samples(across_the_hour())
    usage.fold(0, S10 + 7200)
    before = folded_rows(usage)
    assert usage.fold(0, S10 + 7200) == 0  # the mark moved (a restart, another hub): nothing
    assert usage.fold(S10, S10 + 7200) == 0
    assert folded_rows(usage) == before and usage.mark() == S10 + 7200
    usage.add_samples([sample("gpu-a", 0, S10 + 3700, util=100)])  # behind the mark: too late
    assert usage.fold(S10 + 7200, S10 + 7300) == 0
    assert folded_rows(usage) == before
    assert len(usage.usage(S10 + 3700, raw=True)) == 2  # still listed raw


# -- pruning by age ----------------------------------------------------------------------------


def test_the_downsampler_folds_then_prunes_by_age(db: Database, usage: UsageStore) -> None:
    now = H10 + timedelta(days=20, minutes=30)  # 20 days after H10, at :30
    now_s = int(now.timestamp())
    hour = now_s - 1800  # the current hour's start
    usage.add_samples([
        sample("gpu-a", 0, S10, util=1),  # 20 days old: its hour goes after folding
        sample("gpu-a", 0, hour - 86400 * 13, util=2),  # 13 days: its hour stays
        sample("gpu-a", 0, hour - 7200 + 60, util=3),  # two hours ago: folded, raw pruned
        sample("gpu-a", 0, hour - 3600 + 60, util=4),  # 89 minutes ago: folded, raw pruned
        sample("gpu-a", 0, hour + 60, util=5),  # this hour: folded, raw kept
    ])  # fmt: skip
    done = asyncio.run(Downsampler(db, usage, Retention(), clock=lambda: now).tick())
    assert (done.folded, done.samples, done.hours) == (5, 4, 1)
    assert [(r.start_s, r.utilization_max) for r in usage.usage(0)] == [
        (hour - 86400 * 13, 2), (hour - 7200, 3), (hour - 3600, 4), (hour, 5)]  # fmt: skip
    assert [r.utilization_max for r in usage.usage(0, raw=True)] == [5]
    assert usage.mark() == now_s - 120
    again = asyncio.run(Downsampler(db, usage, Retention(), clock=lambda: now).tick())
    assert (again.folded, again.samples, again.hours) == (0, 0, 0)
    assert [r.samples for r in usage.usage(0)] == [1, 1, 1, 1]


def test_samples_are_folded_once_past_the_grace_and_pruned_only_then(
    db: Database, usage: UsageStore
) -> None:
    policy = Retention(raw=timedelta(minutes=5))
    usage.add_samples([sample("gpu-a", 0, S10 + 60, util=9)])
    now = H10 + timedelta(minutes=61)  # 11:01: folded up to 10:59
    done = asyncio.run(Downsampler(db, usage, policy, clock=lambda: now).tick())
    assert (done.folded, done.samples, usage.mark()) == (1, 1, S10 + 3540)
    late = [sample("gpu-a", 0, S10 + 3570, util=7),  # 10:59:30, written after the tick
            sample("gpu-a", 0, S10 + 3480, util=99)]  # 10:58: behind the mark  # fmt: skip
    usage.add_samples(late)
    assert [r.utilization_max for r in usage.usage(0, raw=True)] == [99, 7]
    later = H10 + timedelta(minutes=70)
    done = asyncio.run(Downsampler(db, usage, policy, clock=lambda: later).tick())
    assert (done.folded, done.samples) == (1, 2)
    assert [(r.start_s, r.samples, r.utilization_max) for r in usage.usage(0)] == [(S10, 2, 9)]


def test_the_recorder_says_how_far_back_its_unwritten_samples_go(
    db: Database, usage: UsageStore
) -> None:
    recorder = TelemetryRecorder(db, usage, flush_s=3600)
    assert recorder.oldest is None
    release = threading.Event()
    db.submit(release.wait, 30)  # a slow disk: the batch waits on the database thread
    recorder.record("gpu-a", beat(1), H10 + timedelta(seconds=5))
    recorder.flush()
    recorder.record("gpu-a", beat(2), H10 + timedelta(seconds=15))
    assert recorder.oldest == S10 + 5  # the batch queued, not yet written
    release.set()
    asyncio.run(db.call(lambda: None))
    assert recorder.oldest == S10 + 15  # the buffer's
    recorder.flush()
    asyncio.run(db.call(lambda: None))
    assert recorder.oldest is None


def test_folding_stops_at_the_oldest_sample_the_recorder_holds(
    db: Database, usage: UsageStore
) -> None:
    """A batch held up longer than the grace (a slow or refusing database) lands behind a mark
    that moved past it: never counted in its hour, then pruned as folded."""
    recorder = TelemetryRecorder(db, usage, flush_s=3600)
    usage.add_samples([sample("gpu-a", 0, S10 + 10, util=1)])
    recorder.record("gpu-a", beat(7), H10 + timedelta(seconds=30))  # not written yet
    now = H10 + timedelta(minutes=10)
    downsampler = Downsampler(db, usage, Retention(), clock=lambda: now, recorder=recorder)
    done = asyncio.run(downsampler.tick())
    assert (done.folded, usage.mark()) == (1, S10 + 30)
    recorder.flush()
    asyncio.run(db.call(lambda: None))
    done = asyncio.run(downsampler.tick())
    assert (done.folded, usage.mark()) == (1, S10 + 480)
    assert (hour(usage, S10).samples, hour(usage, S10).utilization_max) == (2, 7)


def test_folding_waits_while_refused_writes_wait_for_their_retry(tmp_path: Path) -> None:
    """The database refused the recorder's batch (locked); it is writable again, but the batch
    waits for its retry: the mark must not pass it meanwhile."""
    url = sqlite_url(tmp_path)
    db = Database(url, retry_first_s=3600, busy_timeout_s=0.1)
    migrate(db.engine)
    usage = UsageStore(db.engine)
    recorder = TelemetryRecorder(db, usage, flush_s=3600)
    recorder.record("gpu-a", beat(7), H10)
    lock = sqlite3.connect(tmp_path / "hub.db")  # another process holds the write lock
    lock.execute("BEGIN IMMEDIATE")
    recorder.flush()
    asyncio.run(db.call(lambda: None))
    lock.rollback()
    lock.close()
    assert db.pending == 1
    now = H10 + timedelta(minutes=10)
    done = asyncio.run(Downsampler(db, usage, Retention(), clock=lambda: now).tick())
    assert (done.folded, usage.mark()) == (0, None)
    db.close()  # its last retry writes the batch
    db = Database(url)
    try:
        usage = UsageStore(db.engine)
        done = asyncio.run(Downsampler(db, usage, Retention(), clock=lambda: now).tick())
        assert (done.folded, usage.mark()) == (1, S10 + 480)
        assert hour(usage, S10).samples == 1
    finally:
        db.close()


def test_history_tables_keep_their_retention(db: Database) -> None:
    now = H10 + timedelta(days=200)
    old, recent = now - timedelta(days=91), now - timedelta(days=89)
    with Session(db.engine) as session:
        node = Node(name="gpu-a", first_seen=old, status_since=old)
        session.add(node)
        session.flush()
        assert node.id is not None
        for at in (old, old, recent):
            session.add(AuditEntry(at=at, identity="user/a", action="Switch", result="ok"))
            session.add(NodeEvent(node_id=node.id, at=at, kind="gpu_lost", message="m"))
            session.add(NodeTransition(node_id=node.id, at=at, from_state="stopped",
                                       to_state="ready"))  # fmt: skip
        operations = [("op-old", "succeeded", old), ("op-recent", "failed", recent),
                      ("op-running", "running", None)]  # fmt: skip
        for op_id, status, finished in operations:
            session.add(Operation(id=op_id, kind="switch", status=status, created=old,
                                  finished=finished))  # fmt: skip
        session.flush()
        for op_id, _, _ in operations:
            session.add(OperationEvent(operation_id=op_id, seq=1, at=old, step="started"))
        session.commit()
    done = asyncio.run(Downsampler(db, UsageStore(db.engine), Retention(),
                                   clock=lambda: now).tick())  # fmt: skip
    assert done.history == {"audit_entry": 2, "node_event": 2, "node_transition": 2,
                            "operation": 1}  # fmt: skip
    assert count(db, AuditEntry) == 1
    with db.engine.connect() as connection:
        kept = connection.execute(select(OPERATION.c.id).order_by(OPERATION.c.id)).scalars()
        assert list(kept) == ["op-recent", "op-running"]
        events = connection.execute(select(EVENT.c.operation_id)).scalars()
        assert sorted(events) == ["op-recent", "op-running"]  # cascaded


def test_history_pruning_goes_in_bounded_chunks(db: Database) -> None:
    from hub.telemetry import history

    now = H10 + timedelta(days=200)
    with Session(db.engine) as session:
        for i in range(25):
            at = now - timedelta(days=120 - i)
            session.add(AuditEntry(at=at, identity="u", action="a", result="ok"))
        session.commit()
    before = now - timedelta(days=100)  # 20 rows are older (120..101 days)
    assert history.prune_oldest(db.engine, "audit_entry", before, chunk=10) == 10
    assert history.prune_oldest(db.engine, "audit_entry", before, chunk=10) == 10
    assert history.prune_oldest(db.engine, "audit_entry", before, chunk=10) == 0
    assert count(db, AuditEntry) == 5


# -- the policy --------------------------------------------------------------------------------


def test_durations_and_their_bounds() -> None:
    assert duration("90s", "--x") == timedelta(seconds=90)
    assert duration("14d", "--x") == timedelta(days=14)
    with pytest.raises(BadDuration, match="--telemetry-raw 'an hour' is not a duration"):
        duration("an hour", "--telemetry-raw")
    with pytest.raises(argparse.ArgumentTypeError, match=r"^'7' is not a duration"):
        argument("7")
    assert Retention().problem() is None
    assert Retention(raw=timedelta(minutes=1)).problem() == (
        "--telemetry-raw must be at least 5m, got 1m"
    )
    assert Retention(keep=timedelta(minutes=30)).problem() == (
        "--telemetry-keep must be at least 1h, got 30m"
    )
