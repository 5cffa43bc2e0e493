"""API keys of the gateway (issue 16, `hubctl keys`): the hub keeps each key's sha256, never
the secret. A revoked key stays listed (`hubctl keys --all`) and its name may be used again:
names are unique among keys that are not revoked (a partial unique index, so that two hubs
on one PostgreSQL database cannot both create one). Functions run on Database's thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy.exc
from sqlalchemy import JSON, Column, ColumnElement, DateTime, Engine, Index, and_, text
from sqlmodel import Field, Session, SQLModel, col, select

from hub.store.store import as_utc


class ApiKeyRow(SQLModel, table=True):
    __tablename__ = "api_key"
    __table_args__ = (
        Index("ix_api_key_live_name", "name", unique=True,
              sqlite_where=text("revoked IS NULL"), postgresql_where=text("revoked IS NULL")),
    )  # fmt: skip

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=63)
    # The secret's first characters, to tell keys apart ("gpf-3f9a").
    prefix: str = Field(max_length=16)
    sha256: str = Field(max_length=64, unique=True)
    # Model names the key may use; empty: every model.
    models: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    created_by: str = Field(default="", max_length=300)
    revoked: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )


@dataclass(frozen=True)
class ApiKey:
    """A key as the rest of the hub sees it (no secret: the hub never has it after creation)."""

    name: str
    prefix: str
    models: tuple[str, ...]
    created: datetime
    created_by: str
    revoked: datetime | None = None


@dataclass(frozen=True)
class KeyHash:
    """What a gateway needs to check a request's key: its hash and the models it may use."""

    name: str
    sha256: str
    models: tuple[str, ...]


class KeyTaken(Exception):
    """A key that is not revoked has this name."""


def _key(row: ApiKeyRow) -> ApiKey:
    created = as_utc(row.created)
    assert created is not None
    return ApiKey(row.name, row.prefix, tuple(row.models), created, row.created_by,
                  as_utc(row.revoked))  # fmt: skip


def _live(name: str) -> ColumnElement[bool]:
    return and_(col(ApiKeyRow.name) == name, col(ApiKeyRow.revoked).is_(None))


class KeyStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def create(self, name: str, prefix: str, sha256: str, models: tuple[str, ...],
               created: datetime, created_by: str) -> ApiKey:  # fmt: skip
        """KeyTaken when a key that is not revoked has the name."""
        row = ApiKeyRow(name=name, prefix=prefix, sha256=sha256, models=list(models),
                        created=created, created_by=created_by)  # fmt: skip
        with self._session() as session:
            if session.exec(select(ApiKeyRow.id).where(_live(name))).first() is not None:
                raise KeyTaken(name)
            session.add(row)
            try:
                session.commit()
            except sqlalchemy.exc.IntegrityError:  # another hub on the database made it first
                raise KeyTaken(name) from None
            return _key(row)

    def all(self, revoked: bool = False) -> list[ApiKey]:
        """Keys by name, each name's newest first; revoked ones only when asked."""
        query = select(ApiKeyRow)
        if not revoked:
            query = query.where(col(ApiKeyRow.revoked).is_(None))
        query = query.order_by(col(ApiKeyRow.name), col(ApiKeyRow.id).desc())
        with self._session() as session:
            return [_key(row) for row in session.exec(query).all()]

    def revoke(self, name: str, now: datetime) -> ApiKey | None:
        """The key as revoked; None when no key of that name is valid."""
        with self._session() as session:
            row = session.exec(select(ApiKeyRow).where(_live(name))).first()
            if row is None:
                return None
            row.revoked = now
            session.add(row)
            session.commit()
            return _key(row)

    def valid(self) -> list[KeyHash]:
        """Every key that is not revoked, for the gateways' routing table."""
        query = select(ApiKeyRow).where(col(ApiKeyRow.revoked).is_(None))
        with self._session() as session:
            rows = session.exec(query.order_by(col(ApiKeyRow.name))).all()
            return [KeyHash(row.name, row.sha256, tuple(row.models)) for row in rows]
