"""How fast the hub's SQLite database grows per 1,000 agents, before and after telemetry
history with retention (issue 18), and what the recorder and downsampler cost.

    python -m bench.telemetry_growth --agents 1000 [--gpus 4] [--sample-s 60]

Before: today's tables that grow are the audit log (two rows per agent stream: STARTED and
how it ended), and per operation its nodes, events and the nodes' transitions; heartbeats
rewrite rows in place. Measured: the bytes of one connect per agent, and of one switch of
every node (an operation, a row per node, 5 events and 3 transitions per node); none of it
was ever deleted.

After: raw samples (one per GPU per `--sample-s`) for the raw window, hourly rows for
`--keep-days`, the rest for 90 days. Simulated with the Downsampler on a fake clock over
keep-days + 1 days: the last three hours at the full sample rate, earlier hours with one
sample per GPU (an hourly row is as large whatever its sample count), so that the run stays
short. Sizes are SQLite's own page accounting (dbstat) per table and the file size.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlmodel import Session

from hub.store import Database, migrate, sqlite_url
from hub.store.models import Node, NodeTransition, Operation, OperationEvent, OperationNode
from hub.store.trust import AuditEntry
from hub.store.usage import Sample, UsageStore
from hub.telemetry import Downsampler, Retention
from hub.telemetry.downsample import GRACE_S

T0 = datetime(2026, 12, 1, tzinfo=UTC)
MIB = 1024 * 1024


def table_bytes(path: Path) -> dict[str, int]:
    """Bytes of pages per table, its indexes counted with it."""
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        rows = connection.execute(
            "SELECT coalesce(m.tbl_name, d.name), sum(d.pgsize) FROM dbstat d "
            "LEFT JOIN sqlite_master m ON m.name = d.name GROUP BY 1"
        ).fetchall()
    return {str(name): int(size) for name, size in rows}


def connects(db: Database, agents: int, at: datetime) -> None:
    """What one agent stream leaves in the audit log: STARTED, then how it ended."""
    with Session(db.engine) as session:
        for i in range(agents):
            for result in ("STARTED", "CANCELLED"):
                session.add(AuditEntry(at=at, identity=f"node/sim-{i:05d}", action=(
                    "AgentLink/Connect"), peer=f"ipv4:10.0.{i // 250}.{i % 250}:41234",
                    result=result))  # fmt: skip
        session.commit()


def switch(db: Database, agents: int, at: datetime) -> None:
    """One `switch --all` of every node, as the operation store keeps it."""
    op_id = f"op-{at.timestamp():.0f}"
    with Session(db.engine) as session:
        session.add(Operation(id=op_id, kind="switch", configuration="chat-large",
                              status="succeeded", created=at, finished=at,
                              params={"all": True}, message="succeeded"))  # fmt: skip
        session.flush()
        seq = 0
        for i in range(agents):
            node = f"sim-{i:05d}"
            session.add(OperationNode(operation_id=op_id, node=node, position=i,
                                      result="changed", message="switched to chat-large",
                                      started=at, finished=at))  # fmt: skip
            for step in ("started", "draining", "stopping", "starting", "ready"):
                seq += 1
                session.add(OperationEvent(operation_id=op_id, seq=seq, at=at, node=node,
                                           step=step, message=f"{node}: {step}"))  # fmt: skip
        session.commit()
    with Session(db.engine) as session:
        host = Node(name="sim-00000", first_seen=at, status_since=at)
        session.add(host)
        session.flush()
        assert host.id is not None
        for _ in range(agents):
            for before, after in (("ready", "draining"), ("draining", "switching"),
                                  ("switching", "ready")):  # fmt: skip
                row = NodeTransition(node_id=host.id, at=at, from_state=before, to_state=after,
                                     configuration="chat-large", operation_id=op_id)  # fmt: skip
                session.add(row)
        session.commit()


def fixed(moment: datetime) -> Callable[[], datetime]:
    return lambda: moment


def samples(agents: int, gpus: int, at_s: int, minute: int) -> list[Sample]:
    return [
        (f"sim-{i:05d}", g, at_s, "ok", (i + g + minute) % 101, 19304 + minute % 50,
         55.0 + (minute % 20) / 2, 180.0 + minute % 40)
        for i in range(agents) for g in range(gpus)
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--gpus", type=int, default=4)
    parser.add_argument("--sample-s", type=int, default=60, help="one sample per GPU this often")
    parser.add_argument("--keep-days", type=int, default=14)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="telemetry-growth-"))
    try:
        run(tmp, args.agents, args.gpus, args.sample_s, args.keep_days)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(tmp: Path, agents: int, gpus: int, sample_s: int, keep_days: int) -> None:
    db = Database(sqlite_url(tmp))
    migrate(db.engine)
    path = tmp / "hub.db"
    base = table_bytes(path)
    connects(db, agents, T0)
    audit = table_bytes(path)["audit_entry"] - base.get("audit_entry", 0)
    print(f"before: one connect of {agents} agents: {audit / MIB:.2f} MiB of audit log")
    growing = ("operation", "operation_node", "operation_event", "node_transition")
    before = table_bytes(path)
    switch(db, agents, T0)
    after = table_bytes(path)
    op = sum(after.get(t, 0) - before.get(t, 0) for t in growing)
    print(f"before: one switch of {agents} nodes: {op / MIB:.2f} MiB "
          f"(operation, its nodes and events, transitions)")  # fmt: skip

    usage = UsageStore(db.engine)
    retention = Retention(keep=timedelta(days=keep_days))
    hours = (keep_days + 1) * 24
    full_from = hours - 3
    written, write_s, tick_s, ticks = 0, 0.0, 0.0, []
    for hour in range(hours):
        start_s = int(T0.timestamp()) + hour * 3600
        moments = range(0, 3600, sample_s) if hour >= full_from else range(0, 1)
        for offset in moments:
            batch = samples(agents, gpus, start_s + offset, offset // 60)
            began = time.perf_counter()
            usage.add_samples(batch)
            write_s += time.perf_counter() - began
            written += len(batch)
        now = datetime.fromtimestamp(start_s + 3600 + GRACE_S, UTC)  # folds up to the hour's end
        began = time.perf_counter()
        done = asyncio.run(Downsampler(db, usage, retention, clock=fixed(now)).tick())
        took = time.perf_counter() - began
        tick_s += took
        if hour >= full_from:
            ticks.append((round(took, 2), done.folded, done.samples))
    sizes = table_bytes(path)
    raw, hourly = sizes.get("gpu_sample", 0), sizes.get("gpu_usage", 0)
    full_rows = agents * gpus * (3600 // sample_s)
    print(f"after: {written:,} samples written at {written / write_s:,.0f} samples/s "
          f"(one executemany per {agents * gpus} samples)")  # fmt: skip
    print(f"after: downsampler ticks at the full rate (s, samples folded, raw deleted): {ticks}")
    print(f"after: raw samples kept ({full_rows:,} a full hour at one per {sample_s} s per "
          f"GPU): {raw / MIB:.1f} MiB; hourly rows for {keep_days} d: {hourly / MIB:.1f} MiB "
          f"= {hourly / keep_days / MIB:.2f} MiB a day, bounded at {keep_days} d")  # fmt: skip
    print(
        f"after: file {path.stat().st_size / MIB:.1f} MiB; per table MiB: "
        + ", ".join(f"{t} {b / MIB:.2f}" for t, b in sorted(sizes.items()) if b > 64 * 1024)
    )
    db.close()


if __name__ == "__main__":
    main()
