"""Model deployments: which model each node was switched to, on which GPUs and port.

One row per node (a node runs one project at a time). The hub keeps it so that a later
switch can drain the model and roll back to it (regenerated from the current model file with
the stored GPUs and port, as a configuration's rollback uses the current configuration file),
and so that `hubctl models running` and `hubctl models` say where each model runs and since
when. A row counts only while the node's configuration is the row's project: a `hubctl
switch` or `hubctl stop` that replaced the model leaves a stale row, which the next model
switch or stop on that node replaces or removes. Functions run on Database's thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import JSON, Column, DateTime, Engine
from sqlmodel import Field, Session, SQLModel, col, delete, select

from hub.store.store import as_utc


class ModelDeployment(SQLModel, table=True):
    __tablename__ = "model_deployment"

    node: str = Field(primary_key=True, max_length=253)
    model: str = Field(max_length=64, index=True)
    engine: str = Field(max_length=16)
    project: str = Field(max_length=64)
    gpus: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    port: int
    digest: str = Field(max_length=64)
    started_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    # llama.cpp: the environment its process runs from (a backend, or BACKEND-VERSION).
    environment: str = Field(default="", max_length=64)


@dataclass(frozen=True)
class Deployed:
    """A model as a node runs it, as the rest of the hub sees it."""

    node: str
    model: str
    engine: str
    project: str
    gpus: tuple[int, ...]
    port: int
    digest: str
    started_at: datetime
    environment: str = ""  # llama.cpp: a backend or BACKEND-VERSION; "" for vLLM


def _deployed(row: ModelDeployment) -> Deployed:
    started = as_utc(row.started_at)
    assert started is not None
    return Deployed(row.node, row.model, row.engine, row.project, tuple(row.gpus), row.port,
                    row.digest, started, row.environment)  # fmt: skip


class DeploymentStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def put(self, found: Deployed) -> None:
        """The node now runs this deployment (replacing what was recorded for it)."""
        with self._session() as session:
            row = session.get(ModelDeployment, found.node)
            if row is None:
                row = ModelDeployment(node=found.node, started_at=found.started_at, model="",
                                      engine="", project="", port=0, digest="")  # fmt: skip
            row.model, row.engine, row.project = found.model, found.engine, found.project
            row.gpus, row.port, row.digest = list(found.gpus), found.port, found.digest
            row.started_at, row.environment = found.started_at, found.environment
            session.add(row)
            session.commit()

    def forget(self, node: str) -> None:
        """The node runs no model deployment any more."""
        with self._session() as session:
            session.execute(delete(ModelDeployment).where(col(ModelDeployment.node) == node))
            session.commit()

    def get(self, node: str) -> Deployed | None:
        with self._session() as session:
            row = session.get(ModelDeployment, node)
            return _deployed(row) if row is not None else None

    def all(self, nodes: Sequence[str] | None = None) -> list[Deployed]:
        """Every recorded deployment (of the given nodes), by node."""
        query = select(ModelDeployment).order_by(col(ModelDeployment.node))
        if nodes is not None:
            query = query.where(col(ModelDeployment.node).in_(list(nodes)))
        with self._session() as session:
            return [_deployed(row) for row in session.exec(query).all()]
