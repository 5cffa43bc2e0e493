"""The registry's entries (issue 17, `hubctl registry`): one row per entry, its files (path,
size, sha256, chunks) as a JSON column. The bytes are in the object store (hub/registry/store.py)
under ENTRY/REVISION/PATH. Functions run on Database's thread.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, DateTime, Engine
from sqlmodel import Field, Session, SQLModel, col, select

from hub.registry.entries import CHUNK_SIZE, FAILED, PULLING, Entry, EntryFile
from hub.store.store import as_utc


class RegistryEntryRow(SQLModel, table=True):
    __tablename__ = "registry_entry"

    name: str = Field(primary_key=True, max_length=63)
    source: str = Field(max_length=300)
    revision: str = Field(max_length=64)
    layout: str = Field(max_length=16)
    repo: str = Field(default="", max_length=200)
    state: str = Field(max_length=16)
    message: str = Field(default="", max_length=2000)
    chunk_size: int = Field(default=CHUNK_SIZE, sa_column=Column(BigInteger, nullable=False))
    size: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    # [{path, size, sha256, chunks}] in the entry's order.
    files: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    pulled: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )


def _files(rows: list[dict[str, Any]]) -> tuple[EntryFile, ...]:
    return tuple(
        EntryFile(str(f["path"]), int(f["size"]), str(f["sha256"]), tuple(f.get("chunks", ())))
        for f in rows
    )


def _entry(row: RegistryEntryRow) -> Entry:
    return Entry(
        name=row.name, source=row.source, revision=row.revision, layout=row.layout,
        repo=row.repo, files=_files(row.files), state=row.state, message=row.message,
        pulled=as_utc(row.pulled), chunk_size=row.chunk_size,
    )  # fmt: skip


def _fill(row: RegistryEntryRow, entry: Entry) -> RegistryEntryRow:
    row.source, row.revision, row.layout, row.repo = (entry.source, entry.revision,
                                                      entry.layout, entry.repo)  # fmt: skip
    row.state, row.message, row.pulled = entry.state, entry.message[:2000], entry.pulled
    row.chunk_size, row.size = entry.chunk_size, entry.size
    row.files = [{"path": f.path, "size": f.size, "sha256": f.sha256, "chunks": list(f.chunks)}
                 for f in entry.files]  # fmt: skip
    return row


class RegistryStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def upsert(self, entry: Entry) -> Entry:
        """The entry as given, whether or not a row of its name existed."""
        with self._session() as session:
            row = session.get(RegistryEntryRow, entry.name) or RegistryEntryRow(
                name=entry.name, source=entry.source, revision=entry.revision,
                layout=entry.layout, state=entry.state,
            )  # fmt: skip
            session.add(_fill(row, entry))
            session.commit()
            return _entry(row)

    def get(self, name: str) -> Entry | None:
        with self._session() as session:
            row = session.get(RegistryEntryRow, name)
            return _entry(row) if row is not None else None

    def all(self) -> list[Entry]:
        """Every entry by name."""
        with self._session() as session:
            rows = session.exec(select(RegistryEntryRow).order_by(col(RegistryEntryRow.name)))
            return [_entry(row) for row in rows.all()]

    def set_state(self, name: str, state: str, message: str = "",
                  pulled: datetime | None = None) -> Entry | None:  # fmt: skip
        """None when no entry has the name; `pulled` is kept unless given."""
        with self._session() as session:
            row = session.get(RegistryEntryRow, name)
            if row is None:
                return None
            row.state, row.message = state, message[:2000]
            if pulled is not None:
                row.pulled = pulled
            session.add(row)
            session.commit()
            return _entry(row)

    def interrupt(self, source: str, message: str) -> list[str]:
        """Entries of `source` still pulling (their hub stopped meanwhile) marked failed with
        `message`; their names."""
        query = select(RegistryEntryRow).where(
            col(RegistryEntryRow.state) == PULLING, col(RegistryEntryRow.source) == source
        )
        with self._session() as session:
            rows = session.exec(query).all()
            for row in rows:
                row.state, row.message = FAILED, message
                session.add(row)
            session.commit()
            return sorted(row.name for row in rows)

    def remove(self, name: str) -> Entry | None:
        """The entry as it was; None when there was none."""
        with self._session() as session:
            row = session.get(RegistryEntryRow, name)
            if row is None:
                return None
            session.delete(row)
            session.commit()
            return _entry(row)
