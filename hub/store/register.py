"""Many agents' hellos registered in one transaction (a hub restart brings thousands at once).

The same record as Store.register, in a handful of statements per batch instead of a few per
node: nodes are read, inserted and updated with executemany; a node's GPU rows are replaced
only when its inventory (the static fields, or which indexes exist) differs from the stored
one, and otherwise only the rows whose telemetry differs are updated, so a restart where every
agent reports the GPUs it had leaves the GPU table nearly untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Table, bindparam
from sqlalchemy.exc import OperationalError
from sqlmodel import case, delete, func, insert, select, update

from hub.store.models import Gpu, Node, NodeStatus
from hub.store.store import BAD_ROW, GpuRecord, GpuTelemetryRecord, NodeHello

log = logging.getLogger(__name__)
CHUNK = 500  # names or ids in one IN (...): well under SQLite's and PostgreSQL's limits
NODE: Table = Node.__table__  # type: ignore[attr-defined]
GPU: Table = Gpu.__table__  # type: ignore[attr-defined]
TELEMETRY = tuple(f.name for f in fields(GpuTelemetryRecord) if f.name != "index")
STATIC = tuple(f.name for f in fields(GpuRecord) if f.name not in TELEMETRY)  # index included


@dataclass(frozen=True)
class Hello:
    """One agent's hello and when the hub received it."""

    hello: NodeHello
    now: datetime


def register_hellos(engine: Engine, hellos: Sequence[Hello]) -> dict[str, Exception]:
    """Record connected nodes as Store.register does, all in one transaction; a later hello of
    the same node wins over an earlier one. Should the batch fail for a bad row, each node is
    written in its own transaction, so one node's bad row never fails the others: returns what
    failed, by node name (logged). A storage fault (OperationalError) fails the whole call."""
    latest = list({entry.hello.name: entry for entry in hellos}.values())
    if len(latest) > 1:
        try:
            with engine.begin() as connection:
                _write(connection, latest)
            return {}
        except BAD_ROW as exc:
            if isinstance(exc, OperationalError):
                raise  # the database itself fails (locked, full, read-only): not one row
            log.warning("registration batch of %d nodes failed (%s); writing node by node",
                        len(latest), str(exc)[:300])  # fmt: skip
    failed: dict[str, Exception] = {}
    for entry in latest:
        try:
            with engine.begin() as connection:
                _write(connection, [entry])
        except BAD_ROW as exc:
            if isinstance(exc, OperationalError):
                raise
            log.error("registration of node %s not written: %s", entry.hello.name,
                      str(exc)[:300])  # fmt: skip
            failed[entry.hello.name] = exc
    return failed


def _write(connection: Connection, entries: list[Hello]) -> None:
    names = [entry.hello.name for entry in entries]
    ids = {row.name: row.id for row in _select_in(connection, NODE.c.name, names)}
    new = [entry for entry in entries if entry.hello.name not in ids]
    known = [entry for entry in entries if entry.hello.name in ids]
    if new:
        connection.execute(insert(NODE), [
            {**_node_values(entry), "name": entry.hello.name, "first_seen": entry.now,
             "status_since": entry.now, "state_since": entry.now}
            for entry in new
        ])  # fmt: skip
        ids.update((row.name, row.id) for row in _select_in(
            connection, NODE.c.name, [entry.hello.name for entry in new]
        ))  # fmt: skip
    if known:
        # SET reads the row as it was: status_since moves only for a node that was not ready;
        # state_since is set once (a node is `stopped` from its first hello).
        connection.execute(
            update(NODE).where(NODE.c.id == bindparam("b_id")).values({
                **{key: bindparam(f"b_{key}") for key in _NODE_KEYS},
                "status_since": case(
                    (NODE.c.status == NodeStatus.READY.value, NODE.c.status_since),
                    else_=bindparam("b_now"),
                ),
                "state_since": func.coalesce(NODE.c.state_since, bindparam("b_now")),
            }),
            [{"b_id": ids[entry.hello.name], "b_now": entry.now,
              **{f"b_{key}": value for key, value in _node_values(entry).items()}}
             for entry in known],
        )  # fmt: skip
    _write_gpus(connection, {ids[entry.hello.name]: entry.hello.gpus for entry in entries})


_NODE_KEYS = ("agent_id", "labels", "hostname", "address", "agent_version", "probe",
              "probe_error", "preflight", "last_seen", "status")  # fmt: skip


def _node_values(entry: Hello) -> dict[str, Any]:
    hello = entry.hello
    return {
        "agent_id": hello.agent_id, "labels": dict(hello.labels), "hostname": hello.hostname,
        "address": hello.address, "agent_version": hello.agent_version, "probe": hello.probe,
        "probe_error": hello.probe_error, "preflight": list(hello.preflight),
        "last_seen": entry.now, "status": NodeStatus.READY.value,
    }  # fmt: skip


def _write_gpus(connection: Connection, inventories: dict[int, tuple[GpuRecord, ...]]) -> None:
    """Replace the GPU rows of nodes whose inventory changed; update the telemetry of rows
    whose telemetry changed; leave the rest alone."""
    rows: dict[int, dict[int, Any]] = {node_id: {} for node_id in inventories}
    for row in _select_in(connection, GPU.c.node_id, list(inventories), select(GPU)):
        rows[row.node_id][row.index] = row
    replaced: list[int] = []
    telemetry: list[dict[str, Any]] = []
    for node_id, gpus in inventories.items():
        have = rows[node_id]
        if {gpu.index for gpu in gpus} != set(have) or any(
            _static(gpu) != tuple(getattr(have[gpu.index], key) for key in STATIC) for gpu in gpus
        ):
            replaced.append(node_id)
            continue
        for gpu in gpus:
            values = gpu.row_values()
            if any(getattr(have[gpu.index], key) != values[key] for key in TELEMETRY):
                telemetry.append({"b_id": have[gpu.index].id,
                                  **{f"b_{key}": values[key] for key in TELEMETRY}})  # fmt: skip
    if telemetry:
        connection.execute(
            update(GPU).where(GPU.c.id == bindparam("b_id"))
            .values({key: bindparam(f"b_{key}") for key in TELEMETRY}),
            telemetry,
        )  # fmt: skip
    for chunk in _chunks(replaced):
        connection.execute(delete(GPU).where(GPU.c.node_id.in_(chunk)))
    fresh = [
        {"node_id": node_id, "index": gpu.index, **gpu.row_values()}
        for node_id in replaced
        for gpu in inventories[node_id]
    ]  # fmt: skip
    if fresh:
        connection.execute(insert(GPU), fresh)


def _static(gpu: GpuRecord) -> tuple[Any, ...]:
    return tuple(getattr(gpu, key) for key in STATIC)


def _select_in(
    connection: Connection, column: Any, keys: list[Any], query: Any = None
) -> Iterator[Any]:
    """Rows whose `column` is one of `keys` (default: nodes' id and name), a chunk at a time."""
    query = select(NODE.c.id, NODE.c.name) if query is None else query
    for chunk in _chunks(keys):
        yield from connection.execute(query.where(column.in_(chunk)))


def _chunks(keys: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(keys), CHUNK):
        yield keys[start : start + CHUNK]
