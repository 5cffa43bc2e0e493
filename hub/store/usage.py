"""GPU telemetry history (issue 18, `hubctl usage`): raw samples for a short window
(`gpu_sample`), then one row per GPU and hour (`gpu_usage`). Times are whole seconds since the
epoch (integers: compact, and the hour of a sample is `at_s / 3600 * 3600` on SQLite and
PostgreSQL alike). Both tables are keyed by (time, node, gpu) and, on SQLite, stored WITHOUT
ROWID: the key is the table and no index is needed. Time first: a batch of samples appends to
the end (a key in node order would dirty a page per GPU on every flush, 4 KiB of WAL per
sample), pruning deletes from the start, folding and listings read one contiguous range.
Listings are in that order: by hour (or second), then node, then GPU.

Hours are folded incrementally: `fold` adds the samples of one slice of time (after the
watermark in `gpu_usage_mark`) to their hours' sums, counts and maxima, and moves the mark in
the same transaction: each sample is counted once, whatever restarts, and no step reads more
than one slice. Averages are sums over counts, computed when read. Functions run on
Database's thread.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Connection,
    Engine,
    Float,
    Integer,
    String,
    and_,
    delete,
    func,
    literal,
    literal_column,
    or_,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Field, SQLModel

from hub.store import scan
from hub.store.models import Node

HOUR_S = 3600
LabelFilter = Callable[[Mapping[str, str]], bool]
# A raw sample as the recorder buffers it: node, gpu, at_s, state, utilization, memory used,
# temperature, power draw.
Sample = tuple[str, int, int, str, int | None, int, float | None, float | None]
Key = tuple[int, str, int]  # start_s, node, gpu: where a page continues after
SCAN_ROWS = 5000  # most rows one page reads while looking for rows a label filter keeps


class GpuSampleRow(SQLModel, table=True):
    """One telemetry sample the hub received; a second sample of a GPU in the same second
    is dropped (the key)."""

    __tablename__ = "gpu_sample"
    __table_args__ = ({"sqlite_with_rowid": False},)

    at_s: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    node: str = Field(sa_column=Column(String(253), primary_key=True))
    gpu: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    state: str = Field(default="ok", max_length=8)
    utilization: int | None = None
    memory_used_mb: int = 0
    temperature_c: float | None = None
    power_draw_w: float | None = None


class GpuUsageRow(SQLModel, table=True):
    """One GPU over one hour (from `hour_s`), folded from its raw samples up to the mark (the
    current hour too); the sums count the samples that reported the value (`*_n`)."""

    __tablename__ = "gpu_usage"
    __table_args__ = ({"sqlite_with_rowid": False},)

    hour_s: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    node: str = Field(sa_column=Column(String(253), primary_key=True))
    gpu: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    samples: int = 0
    utilization_sum: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    utilization_n: int = 0
    utilization_max: int | None = None
    memory_used_sum_mb: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    memory_used_max_mb: int = 0
    temperature_max_c: float | None = Field(default=None, sa_column=Column(Float, nullable=True))
    power_sum_w: float = Field(default=0.0, sa_column=Column(Float, nullable=False))
    power_n: int = 0


class GpuUsageMark(SQLModel, table=True):
    """One row: raw samples before `folded_to_s` are in `gpu_usage`."""

    __tablename__ = "gpu_usage_mark"

    id: int = Field(default=1, primary_key=True)
    folded_to_s: int = Field(sa_column=Column(BigInteger, nullable=False))


SAMPLE = GpuSampleRow.__table__  # type: ignore[attr-defined]
USAGE = GpuUsageRow.__table__  # type: ignore[attr-defined]
MARK = GpuUsageMark.__table__  # type: ignore[attr-defined]
NODE = Node.__table__  # type: ignore[attr-defined]
SUMS = ("samples", "utilization_sum", "utilization_n", "memory_used_sum_mb", "power_sum_w",
        "power_n")  # fmt: skip
MAXIMA = ("utilization_max", "memory_used_max_mb", "temperature_max_c")
_HOUR = literal_column(str(HOUR_S), BigInteger)
SAMPLE_COLUMNS = ("node", "gpu", "at_s", "state", "utilization", "memory_used_mb",
                  "temperature_c", "power_draw_w")  # fmt: skip


@dataclass(frozen=True)
class Usage:
    """A GPU over a period: an hour (span 3600) or one raw sample (span 0, samples 1)."""

    node: str
    gpu: int
    start_s: int
    span_s: int
    samples: int
    utilization_avg: float | None
    utilization_max: int | None
    memory_used_avg_mb: float
    memory_used_max_mb: int
    temperature_max_c: float | None
    power_avg_w: float | None

    @property
    def key(self) -> Key:
        return self.start_s, self.node, self.gpu


def hour_of(at_s: int) -> int:
    return at_s // HOUR_S * HOUR_S


class UsageStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add_samples(self, samples: Sequence[Sample]) -> None:
        """One executemany of the tuples as they are (no per-row dicts: half the CPU of a
        Core insert); a sample whose key is taken (same GPU, same second) is skipped."""
        if not samples:
            return
        with self.engine.begin() as connection:
            connection.exec_driver_sql(_insert_sql(self.engine), list(samples))

    def mark(self) -> int | None:
        """Where the next fold starts (None: nothing folded yet)."""
        with self.engine.connect() as connection:
            found = connection.execute(select(MARK.c.folded_to_s)).scalar()
        return None if found is None else int(found)

    def fold(self, from_s: int, to_s: int) -> int:
        """Add the raw samples from `from_s` (the mark) to `to_s` to their hours, then move
        the mark to `to_s`, in one transaction; returns the samples folded. A mark that
        moved meanwhile (another hub on the database folded them) folds nothing."""
        with self.engine.begin() as connection:
            moved = connection.execute(
                MARK.update().where(MARK.c.folded_to_s == from_s).values(folded_to_s=to_s)
            ).rowcount  # fmt: skip
            if not moved:
                if connection.execute(select(MARK.c.folded_to_s)).scalar() is not None:
                    return 0
                connection.execute(MARK.insert().values(id=1, folded_to_s=to_s))
            if to_s <= from_s:
                return 0
            found = connection.execute(
                select(func.count()).where(SAMPLE.c.at_s >= from_s, SAMPLE.c.at_s < to_s)
            ).scalar()  # fmt: skip
            if found:
                connection.execute(_fold_slice(self.engine, from_s, to_s))
            return int(found or 0)

    def prune_samples(self, before_s: int, after_s: int | None = None) -> int:
        """Delete raw samples older than `before_s` (and not older than `after_s`)."""
        where = SAMPLE.c.at_s < before_s
        if after_s is not None:
            where = and_(where, SAMPLE.c.at_s >= after_s)
        with self.engine.begin() as connection:
            return int(connection.execute(delete(SAMPLE).where(where)).rowcount or 0)

    def first_sample(self, from_s: int = 0) -> int | None:
        """The time of the first raw sample at or after `from_s` (None: there is none)."""
        with self.engine.connect() as connection:
            found = connection.execute(
                select(func.min(SAMPLE.c.at_s)).where(SAMPLE.c.at_s >= from_s)
            ).scalar()  # fmt: skip
        return None if found is None else int(found)

    def prune_usage(self, before_s: int) -> int:
        """Delete the hours that start before `before_s`."""
        with self.engine.begin() as connection:
            result = connection.execute(delete(USAGE).where(USAGE.c.hour_s < before_s))
            return int(result.rowcount or 0)

    def usage(self, since_s: int, names: Sequence[str] = (), keep: LabelFilter | None = None,
              raw: bool = False) -> list[Usage]:  # fmt: skip
        """Every row `usage_page` lists, page after page (tests and tools; the hub serves
        pages)."""
        found: list[Usage] = []
        after: Key | None = None
        while True:
            with self.engine.connect() as connection:
                rows, after = usage_page(connection, since_s, after, SCAN_ROWS, names, keep, raw)
            found += rows
            if after is None:
                return found


def usage_page(connection: Connection, since_s: int, after: Key | None, size: int,
               names: Sequence[str] = (), keep: LabelFilter | None = None,
               raw: bool = False) -> tuple[list[Usage], Key | None]:  # fmt: skip
    """Up to `size` rows by time, node and GPU from `since_s` on (hours: from the hour that
    holds it), raw samples or hours, after the key `after`; only the `names` (when given) and
    the nodes whose labels `keep` accepts (when given). With them, the key the next page
    continues after (None: there is no more). Behind a label filter no page reads more than
    SCAN_ROWS rows: one that matches little is short (even empty) and continues where its
    scan stopped."""
    periods = _raw_rows(since_s) if raw else _hour_rows(hour_of(since_s))
    if names:
        periods = periods.where(periods.selected_columns.node.in_(list(names)))
    chosen = periods.subquery("usage")
    query = select(chosen)
    if keep is not None:  # the labels only where a filter needs them
        query = select(chosen, NODE.c.labels).outerjoin(NODE, NODE.c.name == chosen.c.node)
    found: list[Usage] = []
    scanned = 0
    while True:
        want = size + 1 - len(found)
        chunk = want if keep is None else min(max(want, scan.CHUNK), SCAN_ROWS - scanned)
        where = query if after is None else query.where(_after(chosen.c, after))
        rows = connection.execute(
            where.order_by(chosen.c.start_s, chosen.c.node, chosen.c.gpu).limit(chunk)
        ).all()  # fmt: skip
        scanned += len(rows)
        found += [_usage(row) for row in rows if keep is None or keep(row[-1] or {})]
        if len(found) > size:
            return found[:size], found[size - 1].key
        if len(rows) < chunk:
            return found, None
        after = _usage(rows[-1]).key
        if scanned >= SCAN_ROWS:
            return found, after


def _insert_sql(engine: Engine) -> str:
    """INSERT ... ON CONFLICT DO NOTHING (SQLite and PostgreSQL), in the driver's paramstyle."""
    mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
    marks = ", ".join([mark] * len(SAMPLE_COLUMNS))
    return (f"INSERT INTO gpu_sample ({', '.join(SAMPLE_COLUMNS)}) VALUES ({marks}) "
            "ON CONFLICT DO NOTHING")  # fmt: skip


def _fold_slice(engine: Engine, from_s: int, to_s: int) -> Any:
    """INSERT INTO gpu_usage SELECT ... GROUP BY hour, node, gpu ... ON CONFLICT: add the
    sums, keep the greater maxima (set-based, one statement)."""
    c = SAMPLE.c
    hour = (c.at_s // _HOUR) * _HOUR
    rows = select(
        hour, c.node, c.gpu, func.count(), func.coalesce(func.sum(c.utilization), 0),
        func.count(c.utilization), func.max(c.utilization), func.sum(c.memory_used_mb),
        func.max(c.memory_used_mb), func.max(c.temperature_c),
        func.coalesce(func.sum(c.power_draw_w), 0.0), func.count(c.power_draw_w),
    ).where(c.at_s >= from_s, c.at_s < to_s).group_by(hour, c.node, c.gpu)  # fmt: skip
    columns = ["hour_s", "node", "gpu", "samples", "utilization_sum", "utilization_n",
               "utilization_max", "memory_used_sum_mb", "memory_used_max_mb",
               "temperature_max_c", "power_sum_w", "power_n"]  # fmt: skip
    greatest: Callable[[Any, Any], Any] = _sqlite_greatest
    if engine.dialect.name == "postgresql":
        upsert: Any = postgresql.insert(USAGE)
        greatest = func.greatest
    else:
        upsert = sqlite.insert(USAGE)
    upsert = upsert.from_select(columns, rows)
    new = upsert.excluded
    changes = {name: USAGE.c[name] + new[name] for name in SUMS}
    changes |= {name: greatest(USAGE.c[name], new[name]) for name in MAXIMA}
    return upsert.on_conflict_do_update(index_elements=["hour_s", "node", "gpu"], set_=changes)


def _sqlite_greatest(a: Any, b: Any) -> Any:
    """SQLite's max(a, b) is NULL when either is; PostgreSQL's greatest ignores NULLs."""
    return func.max(func.coalesce(a, b), func.coalesce(b, a))


def _hour_rows(first_s: int) -> Any:
    c = USAGE.c

    def mean(total: Any, count: Any) -> Any:
        return total * 1.0 / func.nullif(count, 0)

    return select(
        c.node, c.gpu, c.hour_s.label("start_s"), literal(HOUR_S).label("span_s"), c.samples,
        mean(c.utilization_sum, c.utilization_n).label("utilization_avg"), c.utilization_max,
        mean(c.memory_used_sum_mb, c.samples).label("memory_used_avg_mb"),
        c.memory_used_max_mb, c.temperature_max_c,
        mean(c.power_sum_w, c.power_n).label("power_avg_w"),
    ).where(c.hour_s >= first_s)  # fmt: skip


def _raw_rows(since_s: int) -> Any:
    c = SAMPLE.c
    return select(
        c.node, c.gpu, c.at_s.label("start_s"), literal(0).label("span_s"),
        literal(1).label("samples"), c.utilization.label("utilization_avg"),
        c.utilization.label("utilization_max"), c.memory_used_mb.label("memory_used_avg_mb"),
        c.memory_used_mb.label("memory_used_max_mb"), c.temperature_c.label("temperature_max_c"),
        c.power_draw_w.label("power_avg_w"),
    ).where(c.at_s >= since_s)  # fmt: skip


def _after(c: Any, key: Key) -> ColumnElement[bool]:
    start, node, gpu = key
    return or_(c.start_s > start, and_(c.start_s == start, c.node > node),
               and_(c.start_s == start, c.node == node, c.gpu > gpu))  # fmt: skip


def _usage(row: Any) -> Usage:
    def real(value: Any) -> float | None:
        return None if value is None else float(value)

    return Usage(
        node=row.node, gpu=int(row.gpu), start_s=int(row.start_s), span_s=int(row.span_s),
        samples=int(row.samples), utilization_avg=real(row.utilization_avg),
        utilization_max=None if row.utilization_max is None else int(row.utilization_max),
        memory_used_avg_mb=float(row.memory_used_avg_mb or 0),
        memory_used_max_mb=int(row.memory_used_max_mb or 0),
        temperature_max_c=real(row.temperature_max_c), power_avg_w=real(row.power_avg_w),
    )  # fmt: skip
