"""The listings' queries: pages of nodes and of GPUs in key order, read as plain rows.

Core selects of the columns a listing shows (no ORM objects), keyset paging on indexed keys
(node.name; a GPU by its node's name and its index), filters the database can run in SQL
(names, switch state, GPU state) and a filter it cannot (label selectors over the JSON
labels column, link status from the live sessions) applied to bounded chunks. No page reads
more than SCAN_ROWS nodes: a filter that matches little gives a short page (even an empty
one) with a token that continues where the scan stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, Table, and_, func, or_, select

from hub.store.models import Gpu, Node
from hub.store.store import as_utc

NODE: Table = Node.__table__  # type: ignore[attr-defined]
GPU: Table = Gpu.__table__  # type: ignore[attr-defined]
SCAN_ROWS = 5000  # most nodes one page reads while looking for rows its filters keep
CHUNK = 500  # nodes read at a time behind a filter that runs outside SQL
LAST_INDEX = 9999  # a GPU index past every real one (MAX_GPU_INDEX): "after this node"


@dataclass(frozen=True, slots=True)
class NodeRow:
    id: int
    name: str
    labels: Mapping[str, str]
    hostname: str
    address: str
    agent_version: str
    probe: str
    probe_error: str
    preflight: Sequence[str]
    first_seen: datetime | None
    last_seen: datetime | None
    status_since: datetime | None
    state: str
    configuration: str
    state_since: datetime | None
    state_message: str
    gpu_count: int = 0


@dataclass(slots=True)
class GpuRow:
    """One GPU with its node's name; the fields of gpufleet.gpus.Gpu. Not frozen: a listing
    makes 40,000 of them, and a frozen dataclass's __init__ (a setattr call per field) took
    seven times as long. Each is its reader's own, fresh from the database."""

    node: str
    index: int
    uuid: str
    name: str
    vendor: str
    memory_total_mb: int
    memory_used_mb: int
    compute_capability: str
    state: str
    memory_free_mb: int | None
    utilization_percent: int | None
    temperature_c: float | None
    power_draw_w: float | None
    power_limit_w: float | None
    gfx_target: str
    pci_bus_id: str
    driver_version: str
    processes: Sequence[Sequence[int]]


NODE_FIELDS = [f for f in NodeRow.__slots__ if f != "gpu_count"]  # type: ignore[attr-defined]
GPU_FIELDS = [f for f in GpuRow.__slots__ if f != "node"]  # type: ignore[attr-defined]
DATES = ("first_seen", "last_seen", "status_since", "state_since")
Brief = tuple[int, str, Mapping[str, str]]  # a node as a GPU listing filters it


@dataclass(frozen=True)
class Filter:
    """What a listing keeps. `names`, `states` and `gpu_states` run in SQL (empty: all);
    `keep(name, labels)` runs on each node read (None: all)."""

    names: tuple[str, ...] = ()
    states: tuple[str, ...] = ()
    gpu_states: tuple[str, ...] = ()
    keep: Callable[[str, Mapping[str, str]], bool] | None = None

    def where(self, after: str) -> list[ColumnElement[bool]]:
        found = [NODE.c.name > after]
        if self.names:
            found.append(NODE.c.name.in_(self.names))
        if self.states:
            found.append(NODE.c.state.in_(self.states))
        return found


def _node_row(values: Any) -> NodeRow:
    row = dict(values._mapping)
    for name in DATES:
        row[name] = as_utc(row[name])
    row["labels"] = row["labels"] or {}
    row["preflight"] = row["preflight"] or []
    return NodeRow(**row)


def nodes(
    connection: Connection, after: str, size: int, chosen: Filter
) -> tuple[list[NodeRow], str]:
    """Up to `size` nodes after the name `after` that `chosen` keeps, each with its GPU
    count, and the name the next page continues after ("" when there is none)."""
    columns = [NODE.c[name] for name in NODE_FIELDS]
    found: list[NodeRow] = []
    scanned = 0
    while True:
        want = size + 1 - len(found)
        chunk = want if chosen.keep is None else min(max(want, CHUNK), SCAN_ROWS - scanned)
        query = select(*columns).where(*chosen.where(after)).order_by(NODE.c.name).limit(chunk)
        rows = [_node_row(values) for values in connection.execute(query).all()]
        found += [r for r in rows if chosen.keep is None or chosen.keep(r.name, r.labels)]
        scanned += len(rows)
        if len(found) > size:
            found, following = found[:size], found[size - 1].name
            break
        if len(rows) < chunk:
            following = ""
            break
        after = rows[-1].name
        if scanned >= SCAN_ROWS:
            following = after
            break
    return _counted(connection, found), following


def _counted(connection: Connection, rows: list[NodeRow]) -> list[NodeRow]:
    """The rows with their GPU counts: a count of the page's nodes only (node_id index)."""
    if not rows:
        return rows
    query = (
        select(GPU.c.node_id, func.count()).where(GPU.c.node_id.in_([r.id for r in rows]))
        .group_by(GPU.c.node_id)
    )  # fmt: skip
    counts: dict[int, int] = {int(k): int(n) for k, n in connection.execute(query)}
    return [_with_count(r, counts.get(r.id, 0)) for r in rows]


def _with_count(row: NodeRow, count: int) -> NodeRow:
    values = {name: getattr(row, name) for name in NODE_FIELDS}
    return NodeRow(**values, gpu_count=count)


def gpus(
    connection: Connection, after: tuple[str, int], size: int, chosen: Filter
) -> tuple[list[GpuRow], tuple[str, int] | None]:
    """Up to `size` GPUs after (node name, index) `after` that `chosen` keeps, by node name
    and index, and the key the next page continues after (None when there is none)."""
    if chosen.keep is None:
        return _gpus_in_sql(connection, after, size, chosen)
    name, index = after
    found: list[GpuRow] = []
    if index >= 0 and name:  # the rest of the node the last page stopped in
        briefs = _briefs(connection, select_after=name, chosen=chosen, exact=True)
        found += _gpus_of(connection, briefs, size + 1, chosen, after_index=index)
    scanned = 0
    while len(found) <= size:
        want = size + 1 - len(found)
        chunk = min(max(want, CHUNK), SCAN_ROWS - scanned)
        briefs = _briefs(connection, select_after=name, chosen=chosen, limit=chunk)
        scanned += len(briefs)
        kept = [b for b in briefs if chosen.keep(b[1], b[2])]
        found += _gpus_of(connection, kept, want, chosen)
        if len(found) > size:
            break
        if len(briefs) < chunk:
            return found, None
        name = briefs[-1][1]
        if scanned >= SCAN_ROWS:
            return found, (name, LAST_INDEX)
    last = found[size - 1]
    return found[:size], (last.node, last.index)


def _gpus_in_sql(
    connection: Connection, after: tuple[str, int], size: int, chosen: Filter
) -> tuple[list[GpuRow], tuple[str, int] | None]:
    """gpus() when every filter runs in SQL: one keyset query over the GPUs joined to their
    nodes (by node name, then index), not the nodes first and then their GPUs by id (a page of
    5,000 GPUs read 5,001 nodes and bound each id)."""
    name, index = after
    where = [*chosen.where(name)[1:], NODE.c.name >= name,
             or_(NODE.c.name > name, GPU.c.index > index)]  # fmt: skip
    if chosen.gpu_states:
        where.append(GPU.c.state.in_(chosen.gpu_states))
    query = (
        select(NODE.c.name, *(GPU.c[f] for f in GPU_FIELDS))
        .join(NODE, NODE.c.id == GPU.c.node_id).where(*where)
        .order_by(NODE.c.name, GPU.c.index).limit(size + 1)
    )  # fmt: skip
    found = [
        GpuRow(*values[:-1], values[-1] or [])  # type: ignore[call-arg]
        for values in connection.execute(query).all()
    ]
    if len(found) <= size:
        return found, None
    last = found[size - 1]
    return found[:size], (last.node, last.index)


def _briefs(
    connection: Connection, select_after: str, chosen: Filter, limit: int = 1,
    exact: bool = False,
) -> list[Brief]:  # fmt: skip
    """(id, name, labels) of the nodes after a name, or of the node of that name (`exact`)."""
    columns = [NODE.c.id, NODE.c.name] + ([NODE.c.labels] if chosen.keep is not None else [])
    where = chosen.where("")[1:] if exact else chosen.where(select_after)
    if exact:
        where.append(NODE.c.name == select_after)
    query: Select[Any] = select(*columns).where(*where).order_by(NODE.c.name).limit(limit)
    rows = connection.execute(query).all()
    briefs = [(int(r[0]), str(r[1]), (r[2] or {}) if len(r) > 2 else {}) for r in rows]
    if exact and chosen.keep is not None:
        briefs = [b for b in briefs if chosen.keep(b[1], b[2])]
    return briefs


def _gpus_of(
    connection: Connection, briefs: Sequence[Brief], most: int, chosen: Filter,
    after_index: int = -1,
) -> list[GpuRow]:  # fmt: skip
    """The GPUs of these nodes by node name and index, at most `most` of them."""
    if not briefs:
        return []
    names = {brief[0]: brief[1] for brief in briefs}
    where = [GPU.c.node_id.in_(list(names)), GPU.c.index > after_index]
    if chosen.gpu_states:
        where.append(GPU.c.state.in_(chosen.gpu_states))
    query = (
        select(GPU.c.node_id, *(GPU.c[f] for f in GPU_FIELDS))
        .join(NODE, NODE.c.id == GPU.c.node_id).where(and_(*where))
        .order_by(NODE.c.name, GPU.c.index).limit(most)
    )  # fmt: skip
    # Positional: GPU_FIELDS are GpuRow's fields after `node`, in order (processes last).
    return [
        GpuRow(names[values[0]], *values[1:-1], values[-1] or [])  # type: ignore[call-arg]
        for values in connection.execute(query).all()
    ]


@dataclass(frozen=True, slots=True)
class NodeGauge:
    """What the metrics show of a node: its name, switch state and last stored heartbeat."""

    name: str
    state: str
    configuration: str
    last_seen: datetime | None


def every_node(connection: Connection) -> list[NodeGauge]:
    """Every node by name, as the metrics show it (one select of four columns)."""
    columns = (NODE.c.name, NODE.c.state, NODE.c.configuration, NODE.c.last_seen)
    query = select(*columns).order_by(NODE.c.name)
    return [
        NodeGauge(name, state, configuration, as_utc(seen))
        for name, state, configuration, seen in connection.execute(query)
    ]


def every_gpu(connection: Connection) -> list[GpuRow]:
    """Every GPU by node name and index (one select joined to its node's name), without its
    processes (left empty: the metrics do not show them, and decoding them is half the cost)."""
    fields = [f for f in GPU_FIELDS if f != "processes"]
    query = (
        select(NODE.c.name, *(GPU.c[f] for f in fields))
        .join(NODE, NODE.c.id == GPU.c.node_id).order_by(NODE.c.name, GPU.c.index)
    )  # fmt: skip
    return [GpuRow(*values, ()) for values in connection.execute(query)]  # type: ignore[call-arg]
