"""Fixtures the hub's tests share."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.store import Database, migrate
from hub.store.db import sqlite_url


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    """A migrated SQLite database in the test's directory, closed after the test (a module
    that needs another database defines its own `db`)."""
    database = Database(sqlite_url(tmp_path))
    migrate(database.engine)
    yield database
    database.close()
