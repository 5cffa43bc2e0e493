"""The plain-row writes of OperationStore.apply: a batch's node moves, results, events and
warnings, each kind as one executemany (a `switch --all` of thousands of nodes writes them
in a few statements, not an ORM update per row)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, func, insert, update
from sqlmodel import Session

from hub.states import check
from hub.store.models import Node, NodeTransition, OperationEvent, OperationNode

if TYPE_CHECKING:
    from hub.store.operations import Event

MAX_WARNINGS = 20  # kept per node of an operation


class Change:
    """One write of OperationStore.apply: a function of a session and its arguments."""

    def __init__(self, fn: Callable[..., None], *args: Any) -> None:
        self.fn, self.args = fn, args

    @property
    def name(self) -> str:
        return str(getattr(self.fn, "__name__", self.fn))

    def run(self, session: Session) -> None:
        self.fn(session, *self.args)


def results_written(session: Session, results: Sequence[tuple[Any, ...]]) -> None:
    """Many `resulted` (their arguments, in order) as one executemany of plain rows: a
    `switch --all` writes each node's running and final result, ORM updates took most of
    the database thread. Unset started/finished keep what the row has."""
    table = OperationNode.__table__  # type: ignore[attr-defined]
    statement = (
        update(table)
        .where(table.c.operation_id == bindparam("b_operation"),
               table.c.node == bindparam("b_node"))
        .values(result=bindparam("b_result"), message=bindparam("b_message"),
                progress_dropped=bindparam("b_dropped"),
                started=func.coalesce(bindparam("b_started", type_=table.c.started.type),
                                      table.c.started),
                finished=func.coalesce(bindparam("b_finished", type_=table.c.finished.type),
                                       table.c.finished))
    )  # fmt: skip
    rows = [
        {"b_operation": a[0], "b_node": a[1], "b_result": a[2], "b_message": a[3],
         "b_started": a[4], "b_finished": a[5], "b_dropped": a[6] if len(a) > 6 else 0}
        for a in results
    ]  # fmt: skip
    session.execute(statement, rows)


def event_row(operation_id: str, event: Event) -> dict[str, Any]:
    return {"operation_id": operation_id, "seq": event.seq, "at": event.at, "node": event.node,
            "step": event.step, "message": event.message, "progress": event.progress,
            "percent": event.percent}  # fmt: skip


def insert_events(session: Session, events: list[dict[str, Any]]) -> None:
    """Insert the gathered event rows as one executemany, and empty the list."""
    if events:
        session.execute(insert(OperationEvent.__table__), events)  # type: ignore[attr-defined]
        events.clear()


def warned(session: Session, warnings: Sequence[tuple[str, str, str]]) -> None:
    """Many nodes' warnings (operation, node, message) added to their results: one read of
    their rows and one executemany, as plain rows (a row read per warning before)."""
    table = OperationNode.__table__  # type: ignore[attr-defined]
    held: dict[tuple[str, str], list[str]] = {}
    for operation_id in {w[0] for w in warnings}:
        nodes = {w[1] for w in warnings if w[0] == operation_id}
        query = (
            table.select().with_only_columns(table.c.node, table.c.warnings)
            .where(table.c.operation_id == operation_id, table.c.node.in_(nodes))
        )  # fmt: skip
        for row in session.execute(query):
            held[operation_id, row.node] = list(row.warnings or [])
    changed: set[tuple[str, str]] = set()
    for operation_id, node, message in warnings:
        kept = held.get((operation_id, node))
        if kept is not None and len(kept) < MAX_WARNINGS:
            kept.append(message)
            changed.add((operation_id, node))
    if changed:
        statement = (
            update(table)
            .where(table.c.operation_id == bindparam("b_operation"),
                   table.c.node == bindparam("b_node"))
            .values(warnings=bindparam("b_warnings"))
        )  # fmt: skip
        session.execute(statement, [
            {"b_operation": o, "b_node": n, "b_warnings": held[o, n]} for o, n in changed
        ])  # fmt: skip


def moves_written(session: Session, moves: Sequence[tuple[Any, ...]]) -> None:
    """Many `moved` (their arguments, in order) with one read of their nodes, one executemany
    of transitions and one of node updates, as plain rows. Raises as `moved` does (an invalid
    transition, an unknown node) before writing anything."""
    nodes = Node.__table__  # type: ignore[attr-defined]
    query = (
        nodes.select().with_only_columns(nodes.c.id, nodes.c.name, nodes.c.state,
                                         nodes.c.configuration, nodes.c.state_message,
                                         nodes.c.state_since)
        .where(nodes.c.name.in_({m[0] for m in moves}))
    )  # fmt: skip
    known = {row.name: row._asdict() for row in session.execute(query)}
    transitions: list[dict[str, Any]] = []
    changed: dict[str, dict[str, Any]] = {}
    for move in moves:
        name, state, configuration, now = move[:4]
        message = move[4] if len(move) > 4 else ""
        operation_id = move[5] if len(move) > 5 else ""
        node = known.get(name)
        if node is None:
            raise LookupError(f"no node {name}")
        if not (move[6] if len(move) > 6 else False):
            check(node["state"], state)
        if (node["state"], node["configuration"]) != (state, configuration):
            transitions.append({
                "node_id": node["id"], "at": now, "from_state": node["state"],
                "to_state": str(state), "configuration": configuration,
                "operation_id": operation_id, "message": message,
            })  # fmt: skip
        elif node["state_message"] == message:
            continue
        if node["state"] != state or node["state_since"] is None:
            node["state_since"] = now
        node.update(state=str(state), configuration=configuration, state_message=message)
        changed[name] = node
    if transitions:
        session.execute(insert(NodeTransition.__table__), transitions)  # type: ignore[attr-defined]
    if changed:
        statement = (
            update(nodes).where(nodes.c.id == bindparam("b_id"))
            .values(state=bindparam("b_state"), configuration=bindparam("b_configuration"),
                    state_message=bindparam("b_message"), state_since=bindparam("b_since"))
        )  # fmt: skip
        session.execute(statement, [
            {"b_id": n["id"], "b_state": n["state"], "b_configuration": n["configuration"],
             "b_message": n["state_message"], "b_since": n["state_since"]}
            for n in changed.values()
        ])  # fmt: skip
