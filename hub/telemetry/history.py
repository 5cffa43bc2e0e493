"""Retention of the hub's other growing tables: the audit log, node events, node transitions,
and finished operations with their nodes and events (cascaded). Each pass deletes at most one
chunk, oldest first, so that a long backlog never holds the database thread for long: the
caller repeats while a pass deletes a full chunk. Functions run on Database's thread."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine, and_, delete, select

from hub.store.models import NodeEvent, NodeTransition, Operation
from hub.store.store import as_utc
from hub.store.trust import AuditEntry

CHUNK = 5000
# Tables whose rows are written in time order: the smallest ids are the oldest rows.
IN_TIME_ORDER: dict[str, Any] = {
    "audit_entry": AuditEntry.__table__,  # type: ignore[attr-defined]
    "node_event": NodeEvent.__table__,  # type: ignore[attr-defined]
    "node_transition": NodeTransition.__table__,  # type: ignore[attr-defined]
}
OPERATION = Operation.__table__  # type: ignore[attr-defined]


def prune_oldest(engine: Engine, table: str, before: datetime, chunk: int = CHUNK) -> int:
    """Delete the rows of `table` older than `before` among its `chunk` oldest: reads the
    first rows by id and stops at the first one that is not old enough (a pass costs at most
    `chunk` rows read, whatever the table's size)."""
    rows = IN_TIME_ORDER[table]
    with engine.begin() as connection:
        found = connection.execute(
            select(rows.c.id, rows.c.at).order_by(rows.c.id).limit(chunk)
        ).all()  # fmt: skip
        old: list[int] = []
        for row_id, at in found:
            moment = as_utc(at)
            if moment is None or moment >= before:
                break
            old.append(int(row_id))
        if old:
            connection.execute(delete(rows).where(rows.c.id.in_(old)))
        return len(old)


def prune_operations(engine: Engine, before: datetime, chunk: int = 10) -> int:
    """Delete operations that finished before `before` (their nodes and events go with them,
    ON DELETE CASCADE; a switch of 10,000 nodes has some 50,000 events, hence the small
    chunk); a running operation stays whatever its age."""
    with engine.begin() as connection:
        ids = connection.execute(
            select(OPERATION.c.id)
            .where(and_(OPERATION.c.status != "running", OPERATION.c.finished.is_not(None),
                        OPERATION.c.finished < before))
            .order_by(OPERATION.c.finished).limit(chunk)
        ).scalars().all()  # fmt: skip
        if ids:
            connection.execute(delete(OPERATION).where(OPERATION.c.id.in_(list(ids))))
        return len(ids)
