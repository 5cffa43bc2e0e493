"""Reads and writes of cluster state. Synchronous: the hub runs these on Database's thread."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Engine, bindparam, func, update
from sqlmodel import Session, col, delete, select

from hub.store.models import Gpu, Node, NodeStatus


@dataclass(frozen=True)
class GpuRecord:
    index: int
    uuid: str
    name: str
    vendor: str
    memory_total_mb: int
    memory_used_mb: int
    compute_capability: str = ""


@dataclass(frozen=True)
class NodeHello:
    """What the hub learns from an agent's hello."""

    name: str
    agent_id: str
    hostname: str
    address: str
    agent_version: str
    probe: str
    probe_error: str
    labels: Mapping[str, str] = field(default_factory=dict)
    gpus: tuple[GpuRecord, ...] = ()


def as_utc(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything the store writes is UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


class Store:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def register(self, hello: NodeHello, now: datetime) -> None:
        """Record a connected node: its identity, labels, versions and GPU inventory."""
        with self._session() as session:
            node = session.exec(select(Node).where(Node.name == hello.name)).first()
            if node is None:
                node = Node(name=hello.name, first_seen=now, status_since=now)
            if node.status != NodeStatus.READY:
                node.status = NodeStatus.READY.value
                node.status_since = now
            node.agent_id = hello.agent_id
            node.labels = dict(hello.labels)
            node.hostname = hello.hostname
            node.address = hello.address
            node.agent_version = hello.agent_version
            node.probe = hello.probe
            node.probe_error = hello.probe_error
            node.last_seen = now
            session.add(node)
            session.flush()
            assert node.id is not None
            session.exec(delete(Gpu).where(col(Gpu.node_id) == node.id))
            session.add_all(Gpu(node_id=node.id, **vars(gpu)) for gpu in hello.gpus)
            session.commit()

    def mark_down(self, name: str, now: datetime, last_seen: datetime | None) -> None:
        with self._session() as session:
            values: dict[str, object] = {"status": NodeStatus.DOWN.value, "status_since": now}
            if last_seen is not None:
                values["last_seen"] = last_seen
            session.execute(
                update(Node)
                .where(col(Node.name) == name, col(Node.status) != NodeStatus.DOWN.value)
                .values(**values)
            )
            session.commit()

    def mark_all_down(self, now: datetime) -> int:
        """At hub start: no stream is open yet, so no node is ready."""
        with self._session() as session:
            result = session.execute(
                update(Node)
                .where(col(Node.status) != NodeStatus.DOWN.value)
                .values(status=NodeStatus.DOWN.value, status_since=now)
            )
            session.commit()
            return int(getattr(result, "rowcount", 0) or 0)

    def record_last_seen(self, seen: Mapping[str, datetime]) -> None:
        """Batch the heartbeat times the hub keeps in memory into one transaction."""
        if not seen:
            return
        table = Node.__table__  # type: ignore[attr-defined]
        statement = (
            update(table)
            .where(table.c.name == bindparam("node_name"))
            .values(last_seen=bindparam("seen"))
        )
        with self.engine.begin() as connection:
            connection.execute(
                statement, [{"node_name": n, "seen": moment} for n, moment in seen.items()]
            )

    def list_nodes(self) -> list[tuple[Node, int]]:
        """Every node with its GPU count, by name."""
        counts = select(Gpu.node_id, func.count().label("n")).group_by(col(Gpu.node_id)).subquery()
        query = (
            select(Node, func.coalesce(counts.c.n, 0))
            .outerjoin(counts, counts.c.node_id == Node.id)
            .order_by(col(Node.name))
        )
        with self._session() as session:
            return [(node, int(count)) for node, count in session.exec(query).all()]

    def get_node(self, name: str) -> tuple[Node, list[Gpu]] | None:
        with self._session() as session:
            node = session.exec(select(Node).where(Node.name == name)).first()
            if node is None:
                return None
            gpus = session.exec(
                select(Gpu).where(Gpu.node_id == node.id).order_by(col(Gpu.index))
            ).all()
            return node, list(gpus)

    def list_gpus(self) -> list[tuple[Node, Gpu]]:
        query = (
            select(Node, Gpu)
            .join(Gpu, col(Gpu.node_id) == Node.id)
            .order_by(col(Node.name), col(Gpu.index))
        )
        with self._session() as session:
            return [(node, gpu) for node, gpu in session.exec(query).all()]
