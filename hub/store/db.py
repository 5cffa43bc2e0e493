"""Engine, migrations and the one thread that talks to the database."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, event
from sqlmodel import create_engine

T = TypeVar("T")
log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def sqlite_url(state_dir: Path) -> str:
    return f"sqlite:///{state_dir / 'hub.db'}"


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
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
    cursor.close()


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision` with Alembic (run at hub start)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    log.info("database schema is at revision %s", revision)


class Database:
    """Owns the engine and a single worker thread.

    Every statement runs on that thread, in submission order: SQLite allows one writer,
    and ordering keeps a node's transitions (ready, down, ready) in the order they happened.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hub-db")

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue a write without waiting for it; close() still waits for it. A failure is
        logged, since no caller is there to see it."""
        future = self._executor.submit(fn, *args)
        future.add_done_callback(functools.partial(_log_failure, fn))

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.engine.dispose()


def _log_failure(fn: Callable[..., Any], future: Future[Any]) -> None:
    error = future.exception()
    if error is not None:
        log.error("database write %s failed: %s", getattr(fn, "__name__", fn), error,
                  exc_info=error)  # fmt: skip
