"""Submitting an operation from a gRPC handler: which nodes it targets, and its refusals as
one line each (shared by the Hub service's and the Models service's operations)."""

from __future__ import annotations

from typing import Any

import grpc
from sqlalchemy import Connection
from sqlmodel import col, select

from gpufleet.v1 import hub_pb2
from hub.ops.kind import Request
from hub.ops.manager import OperationError, OperationManager
from hub.selection import Known, NoMatch, selector, targeted
from hub.store import Database, NodeStatus, Store
from hub.store.models import Node

Context = grpc.aio.ServicerContext[Any, Any]
ERROR_CODES = {
    "not_found": grpc.StatusCode.NOT_FOUND,
    "conflict": grpc.StatusCode.FAILED_PRECONDITION,
    "invalid": grpc.StatusCode.INVALID_ARGUMENT,
}


async def resolve_targets(db: Database, store: Store, targets: hub_pb2.Targets,
                          context: Context) -> tuple[list[str], list[str]]:  # fmt: skip
    """The nodes an operation runs on (names, --all, label selectors), and every known
    node; a selector matching none is refused with one line, nothing created."""
    chosen = await selector(targets.selector, context)
    known = await db.read(known_nodes)
    try:
        nodes = targeted(list(targets.nodes), targets.all, chosen, known)
    except NoMatch as exc:
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        raise
    return nodes, [k.name for k in known]


def known_nodes(connection: Connection) -> list[Known]:
    """Every node's name, readiness and labels: three columns, on a reader thread (a
    `switch --all` of 10,000 nodes must not load every node's row and GPUs, queued behind
    the writes of the database thread, before it starts)."""
    query = select(col(Node.name), col(Node.status), col(Node.labels)).order_by(col(Node.name))
    return [
        Known(name, status == NodeStatus.READY.value, dict(labels or {}))
        for name, status, labels in connection.execute(query)
    ]


async def submitted(manager: OperationManager, context: Context, request: Request,
                    known: list[str]) -> hub_pb2.OperationRef:  # fmt: skip
    """Submit an operation; a refusal (busy node, unknown node) is its one line."""
    try:
        operation_id = await manager.submit(request, known)
    except OperationError as exc:
        await context.abort(ERROR_CODES[exc.kind], str(exc))
        raise
    return hub_pb2.OperationRef(id=operation_id)
