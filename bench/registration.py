"""How long the hub's database thread spends registering agents' hellos (hub/store/register.py).

    python -m bench.registration --agents 10000 [--batch 500] [--db-url postgresql+psycopg://...]
    python -m bench.registration --agents 20 --batch 8 --one-by-one 10    # smallest

Registers `--agents` nodes of 4 GPUs in batches of `--batch` into a fresh database (SQLite in
a temporary directory unless --db-url), then again as after a hub restart (every node marked
down first): once with the same GPUs and telemetry, once with the same GPUs and new telemetry
(every GPU row's telemetry rewritten). `--one-by-one N` times Store.register, one transaction
per hello as the hub did before batching, for N other nodes, new and again after a restart.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine

from hub.store import GpuRecord, NodeHello, Store, migrate, sqlite_url
from hub.store.db import make_engine
from hub.store.register import Hello, register_hellos


def hellos(count: int, temperature: float, prefix: str = "sim") -> list[NodeHello]:
    return [node(f"{prefix}-{i:05d}", i, temperature) for i in range(count)]


def node(name: str, i: int, temperature: float) -> NodeHello:
    gpus = tuple(
        GpuRecord(g, memory_used_mb=512, memory_free_mb=24052, utilization_percent=3,
                  temperature_c=temperature + g, power_draw_w=41.0,
                  processes=((1000 + g, 512, 1),), uuid=f"GPU-{name}-{g}",
                  name="NVIDIA RTX A5500", vendor="nvidia", memory_total_mb=24564,
                  compute_capability="8.6", power_limit_w=230.0,
                  pci_bus_id=f"00000000:{g + 1:02x}:00.0", driver_version="550.54")
        for g in range(4)
    )  # fmt: skip
    return NodeHello(name, f"id-{name}", name, "ipv4:127.0.0.1:1", "0.9.0", "static", "",
                     {"bench": "1", "rack": str(i % 40)}, gpus)  # fmt: skip


def timed(engine: Engine, nodes: list[NodeHello], batch: int) -> tuple[float, float]:
    """Wall and CPU seconds (this process's) to register `nodes`."""
    now = datetime.now(UTC)
    began, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(nodes), batch):
        failed = register_hellos(engine, [Hello(n, now) for n in nodes[start : start + batch]])
        assert not failed, failed
    return time.perf_counter() - began, time.process_time() - cpu


def one_by_one(store: Store, count: int) -> None:
    nodes = hellos(count, 40.0, prefix="single")
    for label in ("one by one (Store.register), new", "one by one, restart"):
        now = datetime.now(UTC)
        began, cpu = time.perf_counter(), time.process_time()
        for node in nodes:
            store.register(node, now)
        row(label, (time.perf_counter() - began, time.process_time() - cpu), len(nodes))
        store.mark_all_down(now)


def row(label: str, took: tuple[float, float], count: int) -> None:
    wall, cpu = took
    print(f"{label:<34} {wall:.2f} s ({1e6 * wall / count:.0f} ms per 1,000 hellos, "
          f"{1e6 * cpu / count:.0f} ms CPU)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--one-by-one", type=int, default=1000, metavar="N")
    parser.add_argument("--db-url", help="an empty database to use (default: SQLite)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gpufleet-bench-"))
    engine = make_engine(args.db_url or sqlite_url(work))
    try:
        migrate(engine)
        store = Store(engine)
        print(f"hellos                             {args.agents} nodes of 4 GPUs, "
              f"batches of {args.batch} ({engine.dialect.name})")  # fmt: skip
        row("new nodes", timed(engine, hellos(args.agents, 40.0), args.batch), args.agents)
        store.mark_all_down(datetime.now(UTC))
        row("restart, nothing changed", timed(engine, hellos(args.agents, 40.0), args.batch),
            args.agents)  # fmt: skip
        store.mark_all_down(datetime.now(UTC))
        row("restart, new telemetry", timed(engine, hellos(args.agents, 55.0), args.batch),
            args.agents)  # fmt: skip
        if args.one_by_one:
            one_by_one(store, args.one_by_one)
    finally:
        engine.dispose()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
