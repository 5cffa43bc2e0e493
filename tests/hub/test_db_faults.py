"""The hub's database thread under real storage faults: a lock another process holds, a full
filesystem, a damaged file. Writes are kept in order and land when the fault goes away."""

from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hub.store import Database, migrate
from hub.store.db import Corrupted, check_integrity
from hub.store.operations import OperationRecord, OperationStore
from tests.conftest import need
from tests.support.procs import wait_until

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def database(path: Path) -> Database:
    db = Database(f"sqlite:///{path}", retry_first_s=0.05, retry_max_s=0.2, busy_timeout_s=0.2)
    migrate(db.engine)
    return db


def operation(name: str) -> OperationRecord:
    return OperationRecord(id=name, kind="stop", created=NOW)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    db = database(tmp_path / "hub.db")
    yield db
    db.close()


def test_writes_refused_by_a_lock_are_kept_in_order_and_land_when_it_goes(
    db: Database, tmp_path: Path
) -> None:
    ops = OperationStore(db.engine)
    db.submit(ops.create, operation("before"), ["n1"])
    wait_until(lambda: ops.get("before"), 5, "the first write")

    other = sqlite3.connect(tmp_path / "hub.db", isolation_level=None)  # another process's hold
    other.execute("BEGIN EXCLUSIVE")
    landed: list[str] = []
    db.submit(ops.create, operation("first"), ["n1"], landed=lambda: landed.append("first"))
    db.submit(ops.finish, "first", "succeeded", NOW, "all nodes done",
              landed=lambda: landed.append("finish"))  # fmt: skip
    wait_until(lambda: db.error, 5, "the write failure to show")
    assert "locked" in db.error and "locked" in db.problem()
    assert db.pending == 2 and db.write_failures >= 1 and db.writes_lost == 0
    assert landed == []

    other.execute("COMMIT")
    other.close()
    wait_until(lambda: db.pending == 0 and not db.error, 10, "the kept writes to land")
    assert landed == ["first", "finish"]  # in submission order
    found = ops.get("first")
    assert found is not None and (found.status, found.message) == ("succeeded", "all nodes done")
    assert db.problem() == ""


def test_a_refused_row_is_counted_and_dropped_without_blocking_the_others(db: Database) -> None:
    ops = OperationStore(db.engine)
    db.submit(ops.create, operation("dup"), ["n1"])
    db.submit(ops.create, operation("dup"), ["n1"])  # the same primary key: refused for good
    db.submit(ops.create, operation("after"), ["n1"])
    wait_until(lambda: ops.get("after"), 5, "the write after the refused one")
    assert db.writes_lost == 1 and db.write_failures == 1 and db.error == ""


def test_disk_full_then_space_again(tmp_path: Path) -> None:
    """A real ENOSPC: the database on a small tmpfs that a filler file fills."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    if done.returncode != 0:
        need(f"cannot mount a tmpfs here ({done.stderr.strip()}): run the tests as root")
    try:
        db = database(mount / "hub.db")
        ops = OperationStore(db.engine)
        filler = mount / "filler"
        with filler.open("wb") as out, pytest.raises(OSError):
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        big = OperationRecord(id="big", kind="stop", created=NOW, params={"x": "x" * 600_000})
        db.submit(ops.create, big, ["n1"])
        wait_until(lambda: db.error, 10, "the disk-full failure to show")
        assert "full" in db.error, db.error
        filler.unlink()
        wait_until(lambda: db.pending == 0 and not db.error, 10, "the write to land")
        found = ops.get("big")
        assert found is not None and len(found.params["x"]) == 600_000
        db.close()
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_quick_check_finds_a_damaged_file(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    db = database(path)
    ops = OperationStore(db.engine)
    for i in range(300):  # enough rows for several pages of table and index b-trees
        ops.create(OperationRecord(id=f"op-{i:04d}", kind="stop", created=NOW,
                                   params={"m": "m" * 200}), ["n1", "n2"])  # fmt: skip
    check_integrity(db.engine)  # a sound file passes
    db.close()
    with sqlite3.connect(path) as plain:
        plain.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = path.stat().st_size
    with path.open("r+b") as raw:  # scribble over every page but the first (the schema)
        for offset in range(4096 * 2, size, 4096 * 3):
            raw.seek(offset + 16)
            raw.write(b"\xa5" * 512)
    damaged = Database(f"sqlite:///{path}")
    try:
        with pytest.raises(Corrupted):
            check_integrity(damaged.engine)
    finally:
        damaged.close()


def test_a_file_that_is_not_a_database_is_damaged(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    path.write_bytes(b"this is not SQLite" * 1000)
    damaged = Database(f"sqlite:///{path}")
    try:
        with pytest.raises(Corrupted, match="not a database"):
            check_integrity(damaged.engine)
    finally:
        damaged.close()


def test_no_memory_mapped_io(db: Database) -> None:
    with db.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA mmap_size").scalar() == 0
