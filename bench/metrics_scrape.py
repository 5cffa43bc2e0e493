"""One /metrics scrape of a large cluster: the hub's cluster read and the text it serves.

    python -m bench.metrics_scrape [--nodes 1000] [--gpus 4] [--connected 0.5] [--runs 3]

Fills a fresh hub database with NODES nodes of GPUS GPUs each (bench.listings.fill), opens a
welcomed session with fresh telemetry for a CONNECTED fraction of them, and times
hub.metrics.scrape as the hub runs it (Database.read, on a reader thread: the writer thread
is not used). Prints the median time and the size of the text.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.listings import fill
from hub.metrics import scrape
from hub.sessions import SessionRegistry
from hub.store import Database, GpuTelemetryRecord
from hub.store.db import sqlite_url


async def timed(db: Database, registry: SessionRegistry, runs: int) -> tuple[float, int]:
    took, size = [], 0
    for _ in range(runs):
        began = time.perf_counter()
        text = await db.read(scrape, registry.live, len(registry), datetime.now(UTC))
        took.append(time.perf_counter() - began)
        size = len(text)
    return statistics.median(took), size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--gpus", type=int, default=4)
    parser.add_argument("--connected", type=float, default=0.5)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as tmp:
        fill(Path(tmp) / "hub", args.nodes, args.gpus)
        db = Database(sqlite_url(Path(tmp) / "hub"))
        registry = SessionRegistry()
        now = datetime.now(UTC)
        for i in range(int(args.nodes * args.connected)):
            session = registry.open(f"sim-{i:05d}", f"agent-{i}", "127.0.0.1", 0.0, now)
            session.telemetry = tuple(
                GpuTelemetryRecord(
                    k,
                    memory_used_mb=2048,
                    utilization_percent=50,
                    temperature_c=60.0,
                    power_draw_w=300.0,
                )
                for k in range(args.gpus)
            )
        try:
            median, size = asyncio.run(timed(db, registry, args.runs))
        finally:
            db.close()
    print(f"{args.nodes} nodes x {args.gpus} GPUs, {len(registry)} connected: scrape "
          f"{median:.3f} s (median of {args.runs}, on a reader thread), {size} bytes")  # fmt: skip


if __name__ == "__main__":
    main()
