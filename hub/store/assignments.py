"""GPU assignments: the seed's gpu_configurations table, extended with the node.

One row per (configuration, service, set): set ``current`` is in force, ``previous`` is what was
in force before it (for rollback), ``pin`` is an operator's Set (pins always win). Functions run
on Database's thread; a set is replaced as a whole, in one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import JSON, Column, DateTime, Engine, UniqueConstraint
from sqlmodel import Field, Session, SQLModel, col, delete, select, update

from hub.store.store import as_utc

CURRENT, PREVIOUS, PIN = "current", "previous", "pin"
SETS = (CURRENT, PREVIOUS, PIN)


class GpuAssignment(SQLModel, table=True):
    __tablename__ = "gpu_assignment"
    __table_args__ = (
        UniqueConstraint("configuration", "service_name", "set_name", name="uq_gpu_assignment"),
    )

    id: int | None = Field(default=None, primary_key=True)
    configuration: str = Field(max_length=64, index=True)
    service_name: str = Field(max_length=64)
    set_name: str = Field(max_length=16)  # current, previous, pin
    node: str = Field(max_length=253)
    gpu_indices: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    strategy: str = Field(default="manual", max_length=32)
    vram_gb: float = 0.0
    vram_budget_override: float | None = None
    enabled: bool = True
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


@dataclass(frozen=True)
class Assigned:
    """One service's assignment, as the rest of the hub sees it."""

    service: str
    node: str
    gpus: tuple[int, ...]
    vram_gb: float
    budget_gb: float | None
    strategy: str


@dataclass(frozen=True)
class AssignmentSets:
    configuration: str
    current: tuple[Assigned, ...]
    previous: tuple[Assigned, ...]
    pins: tuple[Assigned, ...]
    applied: datetime | None

    @property
    def strategy(self) -> str:
        return self.current[0].strategy if self.current else ""


def _assigned(row: GpuAssignment) -> Assigned:
    return Assigned(
        row.service_name,
        row.node,
        tuple(row.gpu_indices),
        row.vram_gb,
        row.vram_budget_override,
        row.strategy,
    )


def _row(configuration: str, set_name: str, a: Assigned, now: datetime) -> GpuAssignment:
    return GpuAssignment(
        configuration=configuration,
        service_name=a.service,
        set_name=set_name,
        node=a.node,
        gpu_indices=list(a.gpus),
        strategy=a.strategy,
        vram_gb=a.vram_gb,
        vram_budget_override=a.budget_gb,
        created_at=now,
        updated_at=now,
    )


class AssignmentStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def sets(self, configuration: str = "") -> list[AssignmentSets]:
        """Every configuration with assignments or pins (or just the one named), by name."""
        query = select(GpuAssignment).order_by(
            col(GpuAssignment.configuration), col(GpuAssignment.service_name)
        )
        if configuration:
            query = query.where(GpuAssignment.configuration == configuration)
        with self._session() as session:
            rows = session.exec(query).all()
        by_config: dict[str, dict[str, list[GpuAssignment]]] = {}
        for row in rows:
            by_config.setdefault(row.configuration, {}).setdefault(row.set_name, []).append(row)
        found = []
        for name, parts in by_config.items():
            current = parts.get(CURRENT, [])
            applied = max(
                (as_utc(r.updated_at) for r in current),
                default=None,
                key=lambda t: t or datetime.min,
            )
            rows_of = {s: tuple(_assigned(r) for r in parts.get(s, [])) for s in SETS}
            found.append(
                AssignmentSets(name, rows_of[CURRENT], rows_of[PREVIOUS], rows_of[PIN], applied)
            )
        return found

    def one(self, configuration: str) -> AssignmentSets:
        found = self.sets(configuration)
        return found[0] if found else AssignmentSets(configuration, (), (), (), None)

    def put_in_force(self, configuration: str, assigned: Sequence[Assigned], now: datetime) -> None:
        """The given set becomes current; the current one becomes previous."""
        with self._session() as session:
            session.execute(
                delete(GpuAssignment).where(
                    col(GpuAssignment.configuration) == configuration,
                    col(GpuAssignment.set_name) == PREVIOUS,
                )
            )
            session.execute(
                update(GpuAssignment)
                .where(
                    col(GpuAssignment.configuration) == configuration,
                    col(GpuAssignment.set_name) == CURRENT,
                )
                .values(set_name=PREVIOUS)
            )
            session.add_all(_row(configuration, CURRENT, a, now) for a in assigned)
            session.commit()

    def swap(self, configuration: str, now: datetime) -> bool:
        """Rollback: previous and current change places. False when there is no previous."""
        with self._session() as session:
            base = select(GpuAssignment).where(GpuAssignment.configuration == configuration)
            previous = session.exec(base.where(GpuAssignment.set_name == PREVIOUS)).all()
            if not previous:
                return False
            current = session.exec(base.where(GpuAssignment.set_name == CURRENT)).all()
            for row in current:
                row.set_name = "swapping"
                session.add(row)
            session.flush()
            for row in previous:
                row.set_name, row.updated_at = CURRENT, now
                session.add(row)
            session.flush()
            for row in current:
                row.set_name = PREVIOUS
                session.add(row)
            session.commit()
            return True

    def pin(self, configuration: str, pin: Assigned, now: datetime) -> None:
        with self._session() as session:
            row = session.exec(
                select(GpuAssignment).where(
                    GpuAssignment.configuration == configuration,
                    GpuAssignment.service_name == pin.service,
                    GpuAssignment.set_name == PIN,
                )
            ).first()
            if row is None:
                session.add(_row(configuration, PIN, pin, now))
            else:
                row.node, row.gpu_indices = pin.node, list(pin.gpus)
                row.vram_gb, row.vram_budget_override = pin.vram_gb, pin.budget_gb
                row.updated_at = now
                session.add(row)
            session.commit()

    def unpin(self, configuration: str, service: str) -> bool:
        with self._session() as session:
            row = session.exec(
                select(GpuAssignment).where(
                    GpuAssignment.configuration == configuration,
                    GpuAssignment.service_name == service,
                    GpuAssignment.set_name == PIN,
                )
            ).first()
            if row is None:
                return False
            session.delete(row)
            session.commit()
            return True
