"""The hub daemon migrates its schema in a child process: Alembic, mako and pygments (about
11 MiB) never enter its memory, on a first start or an upgrade alike."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from hub.server import HubConfig, HubServer, StartError
from hub.store.db import HEAD, MigrationFailed, make_engine, migrate_apart, stored_revision
from tests.hub.test_lazy_imports import run


def test_a_new_database_is_migrated_without_alembic_in_the_hub(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    script = (
        f"import sys; from hub.store.db import make_engine, migrate_apart; "
        f"migrate_apart(make_engine({url!r})); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'alembic', 'mako', 'pygments'}))"
    )
    assert run(script) == "[]"
    assert stored_revision(make_engine(url)) == HEAD


def unknown_revision(path: Path) -> None:
    """A database a newer hub migrated: this one knows no revision 9999."""
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        connection.execute("INSERT INTO alembic_version VALUES ('9999')")


def test_a_failed_migration_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    unknown_revision(path)
    with pytest.raises(MigrationFailed, match="9999") as failed:
        migrate_apart(make_engine(f"sqlite:///{path}"))
    assert "\n" not in str(failed.value)


def test_an_in_memory_database_is_migrated_in_process() -> None:
    engine = make_engine("sqlite://")
    migrate_apart(engine)
    assert stored_revision(engine) == HEAD


def test_the_daemon_hub_refuses_to_start_on_a_failed_migration(tmp_path: Path) -> None:
    unknown_revision(tmp_path / "hub.db")

    async def main() -> None:
        server = HubServer(HubConfig("127.0.0.1:0", tmp_path, insecure=True, migrate_apart=True))
        try:
            with pytest.raises(StartError, match=r"cannot migrate database .*hub\.db: .*9999"):
                await server.start()
        finally:
            await server.stop(grace=1)

    asyncio.run(main())
