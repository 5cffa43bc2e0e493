"""Model backend associations (issue 15): the llama-cpp-python environment a llama.cpp model
runs from when `hubctl models switch-backend` moved it off its definition's backend. Every
later start of the model (a switch, a rollback to it) generates its process with this
environment. One row per model, cluster-wide; none: the definition's backend. Functions run on
Database's thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Column, DateTime, Engine
from sqlmodel import Field, Session, SQLModel, col, delete, select

from hub.store.store import as_utc


class ModelBackend(SQLModel, table=True):
    __tablename__ = "model_backend"

    model: str = Field(primary_key=True, max_length=64)
    # A backend (cuda, vulkan, rocm, cpu), or BACKEND-VERSION.
    environment: str = Field(max_length=64)
    since: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


@dataclass(frozen=True)
class Associated:
    model: str
    environment: str
    since: datetime


def _associated(row: ModelBackend) -> Associated:
    since = as_utc(row.since)
    assert since is not None
    return Associated(row.model, row.environment, since)


class BackendStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def put(self, model: str, environment: str, since: datetime) -> None:
        with self._session() as session:
            row = session.get(ModelBackend, model)
            if row is None:
                row = ModelBackend(model=model, environment=environment, since=since)
            row.environment, row.since = environment, since
            session.add(row)
            session.commit()

    def forget(self, model: str) -> None:
        """The model runs from its definition's backend again."""
        with self._session() as session:
            session.execute(delete(ModelBackend).where(col(ModelBackend.model) == model))
            session.commit()

    def get(self, model: str) -> Associated | None:
        with self._session() as session:
            row = session.get(ModelBackend, model)
            return _associated(row) if row is not None else None

    def all(self) -> dict[str, Associated]:
        with self._session() as session:
            rows = session.exec(select(ModelBackend)).all()
            return {row.model: _associated(row) for row in rows}
