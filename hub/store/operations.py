"""Node switch states and operations: reads and writes, run on Database's thread."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Engine, update
from sqlmodel import Session, col, select

from hub.store.models import (
    Node,
    NodeTransition,
    Operation,
    OperationEvent,
    OperationNode,
)


class OperationStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def set_state(
        self, name: str, state: str, configuration: str, now: datetime,
        message: str = "", operation_id: str = "",
    ) -> None:  # fmt: skip
        """Move a node's switch state; a change of state or configuration is recorded as a
        transition, a new note alone only updates the node."""
        with self._session() as session:
            node = session.exec(select(Node).where(Node.name == name)).one()
            assert node.id is not None
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
            session.commit()

    def transitions(self, name: str, limit: int = 20) -> list[NodeTransition]:
        query = (
            select(NodeTransition).join(Node, col(Node.id) == NodeTransition.node_id)
            .where(Node.name == name)
            .order_by(col(NodeTransition.at).desc(), col(NodeTransition.id).desc()).limit(limit)
        )  # fmt: skip
        with self._session() as session:
            return list(session.exec(query).all())

    def create(self, operation: Operation, nodes: Sequence[str]) -> None:
        with self._session() as session:
            session.add(operation)
            session.add_all(
                OperationNode(operation_id=operation.id, node=name, position=i)
                for i, name in enumerate(nodes)
            )
            session.commit()

    def add_event(self, event: OperationEvent) -> None:
        with self._session() as session:
            session.add(event)
            session.commit()

    def node_result(
        self, operation_id: str, node: str, result: str, message: str,
        started: datetime | None, finished: datetime | None,
    ) -> None:  # fmt: skip
        with self._session() as session:
            session.execute(
                update(OperationNode)
                .where(col(OperationNode.operation_id) == operation_id,
                       col(OperationNode.node) == node)
                .values(result=result, message=message,
                        **{k: v for k, v in (("started", started), ("finished", finished))
                           if v is not None})
            )  # fmt: skip
            session.commit()

    def finish(self, operation_id: str, status: str, now: datetime, message: str) -> None:
        with self._session() as session:
            session.execute(
                update(Operation).where(col(Operation.id) == operation_id)
                .values(status=status, finished=now, message=message)
            )  # fmt: skip
            session.commit()

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

    def get(self, operation_id: str) -> tuple[Operation, list[OperationNode]] | None:
        with self._session() as session:
            operation = session.get(Operation, operation_id)
            if operation is None:
                return None
            nodes = session.exec(
                select(OperationNode).where(OperationNode.operation_id == operation_id)
                .order_by(col(OperationNode.position))
            ).all()  # fmt: skip
            return operation, list(nodes)

    def recent(self, limit: int) -> list[tuple[Operation, list[OperationNode]]]:
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
        return [(operation, by_id[operation.id]) for operation in operations]

    def events(self, operation_id: str, after_seq: int = 0) -> list[OperationEvent]:
        with self._session() as session:
            return list(session.exec(
                select(OperationEvent)
                .where(OperationEvent.operation_id == operation_id, OperationEvent.seq > after_seq)
                .order_by(col(OperationEvent.seq))
            ).all())  # fmt: skip
