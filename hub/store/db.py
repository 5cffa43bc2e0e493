"""Engine, migrations, the one thread that writes to the database and the readers beside it."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy.exc
from sqlalchemy import Engine, event
from sqlmodel import create_engine

T = TypeVar("T")
log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def sqlite_url(state_dir: Path) -> str:
    return f"sqlite:///{state_dir / 'hub.db'}"


BUSY_TIMEOUT_S = 5.0


def make_engine(url: str, busy_timeout_s: float = BUSY_TIMEOUT_S) -> Engine:
    if url.startswith("sqlite"):
        # A lock held elsewhere fails a write after 5 s (kept and retried, see Database)
        # rather than holding the one database thread, and every read behind it, for long.
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": busy_timeout_s}
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if url.startswith("postgresql"):
        # A partitioned database must fail calls, not freeze the hub's one database thread.
        return create_engine(url, pool_pre_ping=True, connect_args={
            "connect_timeout": 10, "keepalives": 1, "keepalives_idle": 30,
            "options": "-c statement_timeout=30000",
        })  # fmt: skip
    return create_engine(url, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # No memory-mapped I/O: a storage fault under a mapping is a SIGBUS that kills the hub;
    # with read() and write() it is an error the hub reports (Debian's default is 0 too).
    cursor.execute("PRAGMA mmap_size=0")
    cursor.close()


class Corrupted(Exception):
    """SQLite's quick_check found damage; the message is its first finding."""


def check_integrity(engine: Engine) -> None:
    """`PRAGMA quick_check` on SQLite (other databases check themselves): Corrupted when
    the file is damaged or is not a database at all."""
    if engine.dialect.name != "sqlite":
        return
    try:
        with engine.connect() as connection:
            rows = [str(row[0]) for row in connection.exec_driver_sql("PRAGMA quick_check")]
    except sqlalchemy.exc.OperationalError:
        raise  # cannot open or read it (locked, I/O error): the caller says so
    except sqlalchemy.exc.DatabaseError as exc:  # "file is not a database", "malformed"
        raise Corrupted(describe(exc)) from None
    if rows != ["ok"]:
        raise Corrupted(rows[0] if rows else "quick_check returned nothing")


# The newest migration's revision (tests/hub/test_lazy_imports.py holds it to Alembic's head):
# a database already there is not handed to Alembic, which is not even imported (it and the
# template and highlighting libraries it loads are about 12 MiB of a hub's memory).
HEAD = "0012"


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision` with Alembic (run at hub start)."""
    if revision == "head" and stored_revision(engine) == HEAD:
        log.info("database schema is at revision %s", HEAD)
        return
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    log.info("database schema is at revision %s", revision)


class MigrationFailed(Exception):
    """The migration in the child process failed; the message is its one line."""


def migrate_apart(engine: Engine) -> None:
    """`migrate`, for the hub daemon: Alembic runs in a child process, so that its modules
    (with mako and pygments, about 11 MiB) never stay in the hub's memory for its lifetime
    after a first start or an upgrade. An in-memory database, which a child cannot open, is
    migrated here."""
    if stored_revision(engine) == HEAD:
        log.info("database schema is at revision %s", HEAD)
        return
    url = engine.url.render_as_string(hide_password=False)
    if shares_connections(url):
        migrate(engine)
        return
    path = os.pathsep.join(os.path.abspath(entry) if entry else os.getcwd() for entry in sys.path)
    done = subprocess.run(
        [sys.executable, "-c", "from hub.store.db import migrate_child; migrate_child()"],
        input=url, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": path},
    )  # fmt: skip
    if done.returncode != 0:
        lines = done.stdout.strip().splitlines()
        raise MigrationFailed(lines[-1] if lines else f"exit code {done.returncode}")
    log.info("database schema is at revision %s", HEAD)


def migrate_child() -> None:
    """The child of `migrate_apart`: the URL on stdin; a failure's one line on stdout."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    engine = make_engine(sys.stdin.read())
    try:
        migrate(engine)
    except Exception as exc:
        print(describe(exc))
        sys.exit(2)
    finally:
        engine.dispose()


def stored_revision(engine: Engine) -> str | None:
    """The revision Alembic recorded in the database; None for a database it never touched."""
    with engine.connect() as connection:
        if not sqlalchemy.inspect(connection).has_table("alembic_version"):
            return None
        rows = connection.exec_driver_sql("SELECT version_num FROM alembic_version").all()
    return str(rows[0][0]) if len(rows) == 1 else None


READERS = 2  # threads (each with its own connection) that serve listings beside the writer


def shares_connections(url: str) -> bool:
    """An in-memory SQLite database lives in one connection: readers cannot open their own."""
    return url.startswith("sqlite") and (url in ("sqlite://", "sqlite:///") or ":memory:" in url)


RETRY_FIRST_S = 0.5
RETRY_MAX_S = 5.0
MAX_PENDING = 100_000  # queued writes kept while the database refuses them


def storage_fault(exc: BaseException) -> bool:
    """The database could not write (disk full, read-only, locked, I/O error, corrupted
    page, connection lost): the same write may succeed later. A constraint or data error
    is a refusal of that one write, which retrying cannot fix."""
    if isinstance(exc, sqlalchemy.exc.OperationalError):
        return True
    return type(exc) is sqlalchemy.exc.DatabaseError  # e.g. "database disk image is malformed"


def cannot_persist(cause: str) -> str:
    """The one line for a request refused because the database refuses writes."""
    return (f"the hub cannot write its database ({cause}): fix the database's storage (disk "
            "space, permissions, locks; `hubctl status` and /healthz say when writes land "
            "again) and try again")  # fmt: skip


def describe(exc: BaseException) -> str:
    """The driver's own words, one line."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return (text.splitlines() or [type(exc).__name__])[0]


class Database:
    """Owns the engine and a single worker thread.

    Every statement runs on that thread, in submission order: SQLite allows one writer,
    and ordering keeps a node's transitions (ready, down, ready) in the order they happened.

    A queued write (`submit`) that the database refuses for a storage fault is kept, with
    every write queued after it, and retried with backoff until it lands: nothing is
    dropped silently and the order holds. Meanwhile `error` names the cause (for /healthz,
    `hubctl status` and `ops`, the metrics) and callers can refuse new work.

    Listings read on READERS other threads (`read`), each call in one transaction of its own
    connection: SQLite in WAL mode and PostgreSQL let them run while the writer writes, so a
    page never queues behind a batch of heartbeats.
    """

    def __init__(self, url: str, retry_first_s: float = RETRY_FIRST_S,
                 retry_max_s: float = RETRY_MAX_S,
                 busy_timeout_s: float = BUSY_TIMEOUT_S) -> None:  # fmt: skip
        self.url = url
        self.engine = make_engine(url, busy_timeout_s)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hub-db")
        self._readers = (
            None if shares_connections(url)
            else ThreadPoolExecutor(max_workers=READERS, thread_name_prefix="hub-db-read")
        )  # fmt: skip
        self._pending: deque[Write] = deque()  # only touched on the database thread
        self._retry_first_s = retry_first_s
        self._retry_max_s = retry_max_s
        self._delay = retry_first_s
        self._timer: threading.Timer | None = None
        self._closed = False
        self.error = ""  # why writes fail now; "" while they land
        self.write_failures = 0  # writes the database refused, retried or not
        self.writes_lost = 0  # writes given up: not storage faults, or over MAX_PENDING

    @property
    def pending(self) -> int:
        return len(self._pending)

    def problem(self) -> str:
        """One line while writes fail ("" while they land)."""
        if not self.error:
            return ""
        return f"the hub cannot write its database ({self.error}); {self.pending} writes wait"

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(connection, *args)` on a reader thread, in one read transaction that does not
        wait for queued writes (nor sees them before they land). Each statement sees what was
        committed when it ran (SQLite's driver begins no transaction for a SELECT; PostgreSQL
        reads committed), so the statements of one call may see different commits (a page's
        nodes and their GPU counts one write apart, at worst)."""
        loop = asyncio.get_running_loop()
        executor = self._readers or self._executor
        return await loop.run_in_executor(executor, functools.partial(self._read, fn, *args))

    def _read(self, fn: Callable[..., T], *args: Any) -> T:
        with self.engine.connect() as connection, connection.begin():
            return fn(connection, *args)

    def submit(self, fn: Callable[..., Any], *args: Any,
               landed: Callable[[], object] | None = None) -> None:  # fmt: skip
        """Queue a write without waiting for it; close() still waits for it. `landed` runs
        (on the database thread) once it is written, however late."""
        self._executor.submit(self._write, Write(functools.partial(fn, *args), _name(fn), landed))

    def _write(self, write: Write) -> None:
        if self._pending:  # an earlier write waits for the database: keep the order
            self._keep(write)
            return
        if not self._attempt(write):
            self._keep(write)
            self._schedule()

    def _attempt(self, write: Write) -> bool:
        """True when the write is done with (written, or refused for good and logged)."""
        try:
            write.run()
        except Exception as exc:
            self.write_failures += 1
            if storage_fault(exc):
                if not self.error:
                    log.error("database write %s failed, kept and retried until it lands: %s",
                              write.name, describe(exc))  # fmt: skip
                self.error = describe(exc)
                return False
            self.writes_lost += 1
            log.error("database write %s refused, dropped: %s", write.name, describe(exc),
                      exc_info=exc)  # fmt: skip
            return True
        if write.landed is not None:
            write.landed()
        return True

    def _keep(self, write: Write) -> None:
        if len(self._pending) >= MAX_PENDING:
            lost = self._pending.popleft()
            self.writes_lost += 1
            log.error("database write %s dropped: %d writes wait for the database (%s)",
                      lost.name, MAX_PENDING, self.error)  # fmt: skip
        self._pending.append(write)

    def _schedule(self) -> None:
        if self._closed:
            return
        delay, self._delay = self._delay, min(self._delay * 2, self._retry_max_s)
        self._timer = threading.Timer(delay, self._wake)
        self._timer.daemon = True
        self._timer.start()

    def _wake(self) -> None:
        with contextlib.suppress(RuntimeError):  # shut down meanwhile: close() flushes
            self._executor.submit(self._retry)

    def _retry(self) -> None:
        while self._pending:
            if not self._attempt(self._pending[0]):
                self._schedule()
                return
            self._pending.popleft()
        if self.error:
            log.warning("database writes land again (the fault was: %s)", self.error)
        self.error = ""
        self._delay = self._retry_first_s

    def close(self) -> None:
        """Wait for queued writes; one last try for writes the database refused so far."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        self._executor.submit(self._retry)
        self._executor.shutdown(wait=True)
        if self._readers is not None:
            self._readers.shutdown(wait=True)
        if self._pending:
            log.error("%d database writes could not be written and are lost (%s); "
                      "operations still running in the database are marked interrupted at "
                      "the next start", len(self._pending), self.error)  # fmt: skip
        self.engine.dispose()


@dataclass(frozen=True)
class Write:
    run: Callable[[], Any]
    name: str
    landed: Callable[[], object] | None = None


def _name(fn: Callable[..., Any]) -> str:
    return str(getattr(fn, "__name__", fn))
