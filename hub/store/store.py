"""Reads and writes of cluster state. Synchronous: the hub runs these on Database's thread."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, and_, bindparam, func, or_, update
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlmodel import Session, col, delete, select

from hub.store import scan
from hub.store.models import Gpu, Node, NodeEvent, NodeStatus

log = logging.getLogger(__name__)
LabelFilter = Callable[[Mapping[str, str]], bool]  # a node's labels -> listed or not
# What one bad row raises (SQLite: OverflowError past 2^63-1; PostgreSQL: DataError).
BAD_ROW = (SQLAlchemyError, OverflowError, ValueError, TypeError)


# Slots: each connected node's session holds its GPUs' latest telemetry (about 50 bytes less
# per GPU than an instance with a dictionary of its own).
@dataclass(frozen=True, slots=True)
class GpuTelemetryRecord:
    """The changing part of a GPU, as each heartbeat reports it."""

    index: int
    state: str = "ok"
    memory_used_mb: int = 0
    memory_free_mb: int | None = None
    utilization_percent: int | None = None
    temperature_c: float | None = None
    power_draw_w: float | None = None
    # (pid, MiB, 1 when gpufleet started it else 0) per process; stored as [pid, mib, 1|0]
    processes: tuple[tuple[int, int, int], ...] = ()

    def row_values(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "index"}
        values["processes"] = [list(p) for p in self.processes]
        return values


@dataclass(frozen=True, slots=True)
class GpuRecord(GpuTelemetryRecord):
    uuid: str = ""
    name: str = ""
    vendor: str = ""
    memory_total_mb: int = 0
    compute_capability: str = ""
    power_limit_w: float | None = None
    gfx_target: str = ""
    pci_bus_id: str = ""
    driver_version: str = ""

    def row(self, node_id: int) -> Gpu:
        return Gpu(node_id=node_id, index=self.index, **self.row_values())


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
    preflight: tuple[str, ...] = ()  # the agent's podman problems, one line each


@dataclass(frozen=True)
class PlacementGpu:
    """``foreign_mb``: VRAM held by processes gpufleet did not start (not ``managed``; a row of
    the older two-value form counts as not managed)."""

    node: str
    labels: Mapping[str, str]
    index: int
    name: str
    compute_capability: str
    memory_total_mb: int
    state: str
    foreign_mb: int = 0


def foreign_mb(processes: Sequence[Sequence[int]]) -> int:
    """MiB of the GPU processes (``[pid, MiB, managed]`` rows) that gpufleet did not start."""
    return sum(max(int(p[1]), 0) for p in processes if len(p) >= 2 and not (len(p) > 2 and p[2]))


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
            if node.state_since is None:  # a new node is `stopped` from its first hello
                node.state_since = now
            node.agent_id = hello.agent_id
            node.labels = dict(hello.labels)
            node.hostname = hello.hostname
            node.address = hello.address
            node.agent_version = hello.agent_version
            node.probe = hello.probe
            node.probe_error = hello.probe_error
            node.preflight = list(hello.preflight)
            node.last_seen = now
            session.add(node)
            session.flush()
            assert node.id is not None
            self._replace_gpus(session, node.id, hello.gpus)
            session.commit()

    @staticmethod
    def _replace_gpus(session: Session, node_id: int, gpus: tuple[GpuRecord, ...]) -> None:
        session.exec(delete(Gpu).where(col(Gpu.node_id) == node_id))
        session.add_all(gpu.row(node_id) for gpu in gpus)

    def replace_inventory(
        self, name: str, probe: str, probe_error: str, gpus: tuple[GpuRecord, ...],
        preflight: Sequence[str] = (),
    ) -> None:  # fmt: skip
        """A connected node's GPUs changed (one came, went, or a static field changed), or
        what its podman preflight finds."""
        with self._session() as session:
            node = session.exec(select(Node).where(Node.name == name)).one()
            assert node.id is not None
            node.probe, node.probe_error = probe, probe_error
            node.preflight = list(preflight)
            session.add(node)
            self._replace_gpus(session, node.id, gpus)
            session.commit()

    def gpu_state_changed(self, name: str, index: int, state: str, now: datetime,
                          kind: str, message: str) -> None:  # fmt: skip
        """Record a GPU lost or back at once, with an event, not with the next batch."""
        with self._session() as session:
            node = session.exec(select(Node).where(Node.name == name)).one()
            session.execute(
                update(Gpu).where(col(Gpu.node_id) == node.id, col(Gpu.index) == index)
                .values(state=state)
            )  # fmt: skip
            assert node.id is not None
            session.add(NodeEvent(node_id=node.id, at=now, kind=kind, message=message))
            session.commit()

    def events(self, name: str, limit: int = 10) -> list[NodeEvent]:
        query = (
            select(NodeEvent).join(Node, col(Node.id) == NodeEvent.node_id)
            .where(Node.name == name).order_by(col(NodeEvent.at).desc(), col(NodeEvent.id).desc())
            .limit(limit)
        )  # fmt: skip
        with self._session() as session:
            return list(session.exec(query).all())

    def mark_down(
        self, name: str, now: datetime, last_seen: datetime | None,
        telemetry: Sequence[GpuTelemetryRecord] = (),
    ) -> None:  # fmt: skip
        """The node's stream ended: down, with its last heartbeat time and the telemetry the
        hub held but had not written yet (a down node's GPUs keep their last sample).

        Not when the node registered again after that heartbeat: a mark_down that waited in
        the retry queue while the database refused writes must not land on the stream that
        replaced this one (its registration wrote a later last_seen)."""
        with self._session() as session:
            values: dict[str, object] = {"status": NodeStatus.DOWN.value, "status_since": now}
            which = [col(Node.name) == name, col(Node.status) != NodeStatus.DOWN.value]
            if last_seen is not None:
                values["last_seen"] = last_seen
                which.append(or_(col(Node.last_seen).is_(None), col(Node.last_seen) <= last_seen))
            result = session.execute(update(Node).where(*which).values(**values))
            session.commit()
        marked = int(getattr(result, "rowcount", 1) or 0)
        if telemetry and marked:
            try:
                self._write_beats({}, {name: tuple(telemetry)})
            except BAD_ROW as exc:
                if isinstance(exc, OperationalError):
                    raise
                log.error("last telemetry of node %s not written: %s", name, str(exc)[:300])

    def mark_down_many(
        self, now: datetime,
        ended: Sequence[tuple[str, datetime | None, Sequence[GpuTelemetryRecord]]],
    ) -> None:  # fmt: skip
        """A stopping hub's streams, (name, last heartbeat, unwritten telemetry) each, down in
        one transaction rather than one per stream while the port is held."""
        if not ended:
            return
        node = Node.__table__  # type: ignore[attr-defined]
        with self.engine.begin() as connection:
            connection.execute(
                update(node).where(node.c.name == bindparam("node_name"))
                .values(status=NodeStatus.DOWN.value, status_since=now,
                        last_seen=func.coalesce(bindparam("seen"), node.c.last_seen)),
                [{"node_name": name, "seen": seen} for name, seen, _ in ended],
            )  # fmt: skip
        telemetry = {name: tuple(samples) for name, _, samples in ended if samples}
        if telemetry:
            self._write_beats({}, telemetry)

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

    def record_heartbeats(
        self,
        seen: Mapping[str, datetime],
        telemetry: Mapping[str, tuple[GpuTelemetryRecord, ...]] | None = None,
    ) -> list[str]:
        """Batch what the hub kept in memory and is due into one transaction: heartbeat times
        and connected nodes' latest GPU telemetry (only nodes whose telemetry changed).

        Should the batch fail, each node is written in its own transaction, so one node's
        bad row never drops the others'; returns the nodes whose write failed (logged)."""
        telemetry = telemetry or {}
        try:
            self._write_beats(seen, telemetry)
            return []
        except BAD_ROW as exc:
            if isinstance(exc, OperationalError):
                raise  # the database itself fails (locked, full, read-only): not one row
            log.warning("heartbeat batch failed (%s); writing node by node", str(exc)[:300])
        failed = []
        for name in sorted(set(seen) | set(telemetry)):
            one = {name: seen[name]} if name in seen else {}
            try:
                self._write_beats(one, {name: telemetry[name]} if name in telemetry else {})
            except BAD_ROW as exc:
                if isinstance(exc, OperationalError):
                    raise
                log.error("heartbeat of node %s not written: %s", name, str(exc)[:300])
                failed.append(name)
        return failed

    def _write_beats(
        self, seen: Mapping[str, datetime], telemetry: Mapping[str, tuple[GpuTelemetryRecord, ...]]
    ) -> None:
        node, gpu = Node.__table__, Gpu.__table__  # type: ignore[attr-defined]
        beats = [{"node_name": name, "seen": moment} for name, moment in seen.items()]
        samples = [
            {"node_name": name, "gpu_index": sample.index, **sample.row_values()}
            for name, gpus in telemetry.items()
            for sample in gpus
        ]
        with self.engine.begin() as connection:
            if beats:
                connection.execute(
                    update(node).where(node.c.name == bindparam("node_name"))
                    .values(last_seen=bindparam("seen")),
                    beats,
                )  # fmt: skip
            if samples:
                node_id = select(node.c.id).where(node.c.name == bindparam("node_name"))
                columns = [key for key in samples[0] if key not in ("node_name", "gpu_index")]
                connection.execute(
                    update(gpu)
                    .where(gpu.c.node_id == node_id.scalar_subquery(),
                           gpu.c.index == bindparam("gpu_index"))
                    .values({key: bindparam(key) for key in columns}),
                    samples,
                )  # fmt: skip

    def list_nodes(
        self, after: str = "", limit: int | None = None, keep: LabelFilter | None = None
    ) -> list[tuple[Node, int]]:
        """Nodes with their GPU counts, by name: all, or `limit` of them after the name `after`;
        with `keep`, only the nodes whose labels it accepts (a label selector)."""
        counts = select(Gpu.node_id, func.count().label("n")).group_by(col(Gpu.node_id)).subquery()

        def fetch(start: str, most: int | None) -> list[tuple[Node, int]]:
            query = (
                select(Node, func.coalesce(counts.c.n, 0))
                .outerjoin(counts, counts.c.node_id == Node.id)
                .where(col(Node.name) > start)
                .order_by(col(Node.name))
                .limit(most)
            )
            with self._session() as session:
                return [(node, int(count)) for node, count in session.exec(query).all()]

        if keep is None:
            return fetch(after, limit)
        return scan.kept(fetch, lambda row: row[0].name, after,
                         lambda row: keep(row[0].labels or {}), limit)  # fmt: skip

    def get_node(self, name: str) -> tuple[Node, list[Gpu]] | None:
        with self._session() as session:
            node = session.exec(select(Node).where(Node.name == name)).first()
            if node is None:
                return None
            gpus = session.exec(
                select(Gpu).where(Gpu.node_id == node.id).order_by(col(Gpu.index))
            ).all()
            return node, list(gpus)

    def placement_gpus(self, nodes: Sequence[str]) -> list[PlacementGpu]:
        """The GPUs of the named nodes as placement sees them."""
        query = (
            select(Node, Gpu)
            .join(Gpu, col(Gpu.node_id) == Node.id)
            .where(col(Node.name).in_(list(nodes)))
            .order_by(col(Node.name), col(Gpu.index))
        )
        with self._session() as session:
            return [
                PlacementGpu(node.name, dict(node.labels), gpu.index, gpu.name,
                             gpu.compute_capability, gpu.memory_total_mb, gpu.state,
                             foreign_mb(gpu.processes or []))
                for node, gpu in session.exec(query).all()
            ]  # fmt: skip

    def list_gpus(
        self,
        after: tuple[str, int] = ("", -1),
        limit: int | None = None,
        keep: LabelFilter | None = None,
    ) -> list[tuple[Node, Gpu]]:
        """GPUs by node name and index: all, or `limit` of them after (node, index) `after`;
        with `keep`, only the GPUs of nodes whose labels it accepts."""

        def fetch(start: tuple[str, int], most: int | None) -> list[tuple[Node, Gpu]]:
            name, index = start
            query = (
                select(Node, Gpu)
                .join(Gpu, col(Gpu.node_id) == Node.id)
                .where(or_(col(Node.name) > name,
                           and_(col(Node.name) == name, col(Gpu.index) > index)))
                .order_by(col(Node.name), col(Gpu.index))
                .limit(most)
            )  # fmt: skip
            with self._session() as session:
                return [(node, gpu) for node, gpu in session.exec(query).all()]

        if keep is None:
            return fetch(after, limit)
        return scan.kept(fetch, lambda row: (row[0].name, row[1].index), after,
                         lambda row: keep(row[0].labels or {}), limit)  # fmt: skip
