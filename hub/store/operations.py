"""Node switch states and operations: reads and writes, run on Database's thread.

A node's `warning` event (switch: what its GPUs cannot hold) is stored as an event and in
the node's result (`operation_node.warnings`), where `ops show` and the recap find it.

Callers get and give plain dataclasses; the ORM rows stay in this module."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, delete, insert, update
from sqlmodel import Session, col, select

from hub.states import NodeState, check
from hub.store.db import describe, storage_fault
from hub.store.models import (
    Node,
    NodeTransition,
    Operation,
    OperationEvent,
    OperationNode,
)
from hub.store.op_rows import (
    MAX_WARNINGS,
    Change,
    event_row,
    insert_events,
    moves_written,
    results_written,
    warned,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    seq: int
    at: datetime
    node: str
    step: str
    message: str
    done: bool = False
    progress: bool = False
    percent: float | None = None


@dataclass(frozen=True)
class NodeResult:
    node: str
    result: str = "pending"
    message: str = ""
    started: datetime | None = None
    finished: datetime | None = None
    progress_dropped: int = 0
    # What may keep the node from running the configuration well (a check's capacity
    # findings): informative, never a failure.
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class OperationRecord:
    id: str
    kind: str
    created: datetime
    configuration: str = ""
    status: str = "running"
    check: bool = False
    params: dict[str, Any] = field(default_factory=dict)
    finished: datetime | None = None
    message: str = ""
    nodes: tuple[NodeResult, ...] = ()


def _record(row: Operation, nodes: Sequence[OperationNode]) -> OperationRecord:
    return OperationRecord(
        row.id, row.kind, row.created, row.configuration, row.status, row.check,
        dict(row.params), row.finished, row.message,
        tuple(NodeResult(n.node, n.result, n.message, n.started, n.finished, n.progress_dropped,
                         tuple(n.warnings or ())) for n in nodes),
    )  # fmt: skip


WARNING_STEP = "warning"  # a node's event with this step is also one of its result's warnings


class OperationStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def set_state(
        self, name: str, state: NodeState, configuration: str, now: datetime,
        message: str = "", operation_id: str = "", observed: bool = False,
    ) -> None:  # fmt: skip
        """Move a node's switch state; a change of state or configuration is recorded as a
        transition, a new note alone only updates the node. An operation's move must be one
        of hub.states.TRANSITIONS (InvalidTransition otherwise); what an agent reports it
        runs (`observed`) may put the node in any state."""
        self.apply([Change(self.moved, name, state, configuration, now, message, operation_id,
                           observed)])  # fmt: skip

    @staticmethod
    def moved(
        session: Session, name: str, state: NodeState, configuration: str, now: datetime,
        message: str = "", operation_id: str = "", observed: bool = False,
    ) -> None:  # fmt: skip
        """set_state within `session` (see apply)."""
        node = session.exec(select(Node).where(Node.name == name)).one()
        assert node.id is not None
        if not observed:
            check(node.state, state)
        if (node.state, node.configuration) != (state, configuration):
            session.add(NodeTransition(
                node_id=node.id, at=now, from_state=node.state, to_state=state,
                configuration=configuration, operation_id=operation_id, message=message,
            ))  # fmt: skip
        elif node.state_message == message:
            return
        if node.state != state or node.state_since is None:
            node.state_since = now
        node.state, node.configuration, node.state_message = state, configuration, message
        session.add(node)

    def apply(self, changes: Sequence[Change]) -> None:
        """Write `changes` in one transaction (an operation's writes of one turn of the hub's
        event loop: a `switch --all` moves thousands of nodes at once). When one of them is
        refused (an invalid transition, a constraint), the others are written one by one and
        only that one is dropped, logged; a storage fault fails the whole call, to be retried
        (hub.store.db.Database)."""
        try:
            with self._session() as session, session.no_autoflush:
                # The nodes' moves and results, each kind as plain rows in one executemany
                # (in order within the kind; they touch other tables than the rest).
                moves = [c.args for c in changes if c.fn == self.moved]
                results = [c.args for c in changes if c.fn == self.resulted]
                # A lone set_state keeps the ORM path and its errors; in a batch even one move
                # is a plain row (a switch's nodes mostly end one per turn, with their events).
                rows = bool(moves) and len(changes) > 1
                batched = {self.resulted, self.moved} if rows else {self.resulted}
                events: list[dict[str, Any]] = []
                warnings: list[tuple[str, str, str]] = []
                for change in changes:
                    if change.fn == self.event_added:
                        events.append(event_row(*change.args))
                        if change.args[1].step == WARNING_STEP and change.args[1].node:
                            warnings.append((change.args[0], change.args[1].node,
                                             change.args[1].message))  # fmt: skip
                    elif change.fn not in batched:
                        insert_events(session, events)  # before what may delete them
                        change.run(session)
                insert_events(session, events)
                if warnings:
                    warned(session, warnings)
                if rows:
                    moves_written(session, moves)
                if results:
                    results_written(session, results)
                session.commit()
            return
        except Exception as exc:
            if storage_fault(exc) or len(changes) == 1:
                raise
        for change in changes:
            try:
                with self._session() as session:
                    change.run(session)
                    session.commit()
            except Exception as exc:
                if storage_fault(exc):
                    raise
                log.error("operation write %s refused, dropped: %s", change.name, describe(exc))

    def nodes_in_state(self, state: NodeState) -> list[str]:
        with self._session() as session:
            return list(session.exec(select(Node.name).where(Node.state == state.value)).all())

    def transitions(self, name: str, limit: int = 20) -> list[NodeTransition]:
        query = (
            select(NodeTransition).join(Node, col(Node.id) == NodeTransition.node_id)
            .where(Node.name == name)
            .order_by(col(NodeTransition.at).desc(), col(NodeTransition.id).desc()).limit(limit)
        )  # fmt: skip
        with self._session() as session:
            return list(session.exec(query).all())

    def create(self, record: OperationRecord, nodes: Sequence[str]) -> None:
        operation = Operation(
            id=record.id, kind=record.kind, configuration=record.configuration,
            status=record.status, check=record.check, created=record.created,
            params=record.params,
        )  # fmt: skip
        with self._session() as session:
            session.add(operation)
            session.flush()  # the operation's row before its nodes' (their foreign key)
            # One executemany of plain rows: a `switch --all` of 10,000 nodes took seconds
            # as ORM objects, on the database thread the Switch call waits for.
            rows = [
                {"operation_id": operation.id, "node": name, "position": i, "result": "pending",
                 "message": "", "progress_dropped": 0, "warnings": []}
                for i, name in enumerate(nodes)
            ]  # fmt: skip
            if rows:  # none: an executemany of no rows would insert one empty row
                session.execute(insert(OperationNode.__table__), rows)  # type: ignore[attr-defined]
            session.commit()

    def add_event(self, operation_id: str, event: Event) -> None:
        self.apply([Change(self.event_added, operation_id, event)])

    @classmethod
    def event_added(cls, session: Session, operation_id: str, event: Event) -> None:
        """add_event within `session` (see apply)."""
        session.add(OperationEvent(
            operation_id=operation_id, seq=event.seq, at=event.at, node=event.node,
            step=event.step, message=event.message, progress=event.progress,
            percent=event.percent,
        ))  # fmt: skip
        if event.step == WARNING_STEP and event.node:
            cls._warn(session, operation_id, event.node, event.message)

    @staticmethod
    def _warn(session: Session, operation_id: str, node: str, message: str) -> None:
        row = session.exec(
            select(OperationNode).where(OperationNode.operation_id == operation_id,
                                        OperationNode.node == node)
        ).first()  # fmt: skip
        if row is not None and len(row.warnings or []) < MAX_WARNINGS:
            row.warnings = [*(row.warnings or []), message]  # a new list: JSON columns
            session.add(row)

    def delete_event(self, operation_id: str, seq: int) -> None:
        self.apply([Change(self.event_deleted, operation_id, seq)])

    @staticmethod
    def event_deleted(session: Session, operation_id: str, seq: int) -> None:
        """delete_event within `session` (see apply)."""
        session.flush()  # the event may have been added in the same transaction
        session.execute(
            delete(OperationEvent).where(col(OperationEvent.operation_id) == operation_id,
                                         col(OperationEvent.seq) == seq)
        )  # fmt: skip

    def node_result(
        self, operation_id: str, node: str, result: str, message: str,
        started: datetime | None, finished: datetime | None, progress_dropped: int = 0,
    ) -> None:  # fmt: skip
        self.apply([Change(self.resulted, operation_id, node, result, message, started,
                           finished, progress_dropped)])  # fmt: skip

    @staticmethod
    def resulted(
        session: Session, operation_id: str, node: str, result: str, message: str,
        started: datetime | None, finished: datetime | None, progress_dropped: int = 0,
    ) -> None:  # fmt: skip
        """node_result within `session` (see apply)."""
        session.execute(
            update(OperationNode)
            .where(col(OperationNode.operation_id) == operation_id,
                   col(OperationNode.node) == node)
            .values(result=result, message=message, progress_dropped=progress_dropped,
                    **{k: v for k, v in (("started", started), ("finished", finished))
                       if v is not None})
            .execution_options(synchronize_session=False)  # no ORM copy of these rows to update
        )  # fmt: skip

    def finish(self, operation_id: str, status: str, now: datetime, message: str) -> None:
        self.apply([Change(self.finished, operation_id, status, now, message)])

    @staticmethod
    def finished(
        session: Session, operation_id: str, status: str, now: datetime, message: str
    ) -> None:
        """finish within `session` (see apply)."""
        session.execute(
            update(Operation).where(col(Operation.id) == operation_id)
            .values(status=status, finished=now, message=message)
        )  # fmt: skip

    def interrupt_running(self, now: datetime) -> list[str]:
        """At hub start: no operation survives a restart. Mark them and their open nodes."""
        with self._session() as session:
            running = session.exec(select(Operation).where(Operation.status == "running")).all()
            ids = [operation.id for operation in running]
            if ids:
                message = "interrupted: the hub restarted while it ran"
                session.execute(
                    update(Operation).where(col(Operation.id).in_(ids))
                    .values(status="interrupted", finished=now, message=message)
                )  # fmt: skip
                session.execute(
                    update(OperationNode)
                    .where(col(OperationNode.operation_id).in_(ids),
                           col(OperationNode.result).in_(["pending", "running"]))
                    .values(result="interrupted", finished=now, message=message)
                )  # fmt: skip
            session.commit()
            return ids

    def exists(self, operation_id: str) -> bool:
        with self._session() as session:
            return session.get(Operation, operation_id) is not None

    def get(self, operation_id: str) -> OperationRecord | None:
        with self._session() as session:
            operation = session.get(Operation, operation_id)
            if operation is None:
                return None
            nodes = session.exec(
                select(OperationNode).where(OperationNode.operation_id == operation_id)
                .order_by(col(OperationNode.position))
            ).all()  # fmt: skip
            return _record(operation, nodes)

    def recent(self, limit: int) -> list[OperationRecord]:
        with self._session() as session:
            operations = session.exec(
                select(Operation).order_by(col(Operation.created).desc()).limit(limit)
            ).all()
            ids = [operation.id for operation in operations]
            nodes = session.exec(
                select(OperationNode).where(col(OperationNode.operation_id).in_(ids))
                .order_by(col(OperationNode.position))
            ).all()  # fmt: skip
        by_id: dict[str, list[OperationNode]] = {i: [] for i in ids}
        for node in nodes:
            by_id[node.operation_id].append(node)
        return [_record(operation, by_id[operation.id]) for operation in operations]

    def events(self, operation_id: str, after_seq: int = 0) -> list[Event]:
        """As plain rows: a watcher of a `switch --all` reads thousands of events at once, on
        the database thread the operation's writes queue on (ORM rows took most of it)."""
        table = OperationEvent.__table__  # type: ignore[attr-defined]
        query = (
            table.select()
            .with_only_columns(table.c.seq, table.c.at, table.c.node, table.c.step,
                               table.c.message, table.c.progress, table.c.percent)
            .where(table.c.operation_id == operation_id, table.c.seq > after_seq)
            .order_by(table.c.seq)
        )  # fmt: skip
        with self.engine.connect() as connection:
            return [
                Event(seq, at, node, step, message, step == "done", progress, percent)
                for seq, at, node, step, message, progress, percent in connection.execute(query)
            ]
