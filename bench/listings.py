"""hubctl nodes, gpus and status on a large cluster: time to the first line and to the end.

    python -m bench.listings [--nodes 1000] [--gpus 4] [--runs 3] [--db postgresql]

Fills a fresh hub database (SQLite, or a throwaway PostgreSQL server) with NODES nodes of
GPUS GPUs each, straight into its tables (no agents: every node is down, as after they all
left), starts a real hub over mutual TLS on it (the default a user gets), and runs `hubctl
nodes`, `hubctl gpus` and `hubctl status` as fresh processes with the hub's admin
credential, RUNS times each, piped as a script reads them. Prints per command the median
time to the first line of output and to the end, and the rows it printed. One unrecorded
`hubctl --help` first, so byte-code compilation is not timed. The issue's goal at 10,000
nodes: the first line within 1 s, the whole within 3 s.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import insert

from bench.cli_latency import console_script, write_config
from bench.common import REPO, postgres_url, proc_stats, start_hub, stop
from hub.store.db import make_engine, migrate, sqlite_url
from hub.store.models import Gpu, Node

COMMANDS = (["nodes"], ["gpus"], ["status"])


def fill(state_dir: Path, nodes: int, gpus: int, url: str | None = None) -> None:
    """NODES nodes named sim-00000.. with GPUS GPUs each, in batches of 1,000 nodes, in the
    database at `url` (default: the state dir's SQLite)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(url or sqlite_url(state_dir))
    migrate(engine)
    now = datetime.now(UTC)
    with engine.begin() as connection:
        for start in range(0, nodes, 1000):
            batch = range(start, min(start + 1000, nodes))
            connection.execute(insert(Node.__table__), [  # type: ignore[attr-defined]
                {"id": i + 1, "name": f"sim-{i:05d}", "agent_id": f"agent-{i}", "status": "down",
                 "labels": {"zone": f"z{i % 4}", "parity": "odd" if i % 2 else "even"},
                 "hostname": f"sim-{i:05d}", "address": "127.0.0.1", "agent_version": "0.1.0",
                 "probe": "static", "probe_error": "", "preflight": [], "first_seen": now,
                 "last_seen": now, "status_since": now, "state": "stopped",
                 "configuration": "", "state_since": now, "state_message": ""}
                for i in batch
            ])  # fmt: skip
            connection.execute(insert(Gpu.__table__), [  # type: ignore[attr-defined]
                {"node_id": i + 1, "index": k, "uuid": f"GPU-{i}-{k}", "name": "NVIDIA H100",
                 "vendor": "nvidia", "memory_total_mb": 81559, "memory_used_mb": 1024 * k,
                 "compute_capability": "9.0", "state": "ok", "memory_free_mb": 81559 - 1024 * k,
                 "utilization_percent": 10 * k, "temperature_c": 40.0 + k,
                 "power_draw_w": 100.0 + k, "power_limit_w": 700.0, "gfx_target": "",
                 "pci_bus_id": f"0000:{k:02x}:00.0", "driver_version": "550.54",
                 "processes": [[1000 + k, 512, 1]]}
                for i in batch for k in range(gpus)
            ])  # fmt: skip
    engine.dispose()


def timed(argv: list[str], env: dict[str, str], hub: int = 0) -> tuple[float, ...]:
    """Seconds to the first line and to the end, lines, and CPU seconds of hubctl and of the
    hub (pid `hub`) over one hubctl run: CPU time holds where a loaded machine stretches the
    wall time."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    hub_cpu = proc_stats(hub)[1] if hub else 0.0
    began = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                               cwd=REPO, text=True)  # fmt: skip
    assert process.stdout is not None
    first = process.stdout.readline()
    first_at = time.perf_counter() - began
    lines = (1 if first else 0) + sum(1 for _ in process.stdout)
    _, err = process.communicate()
    took = time.perf_counter() - began
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {process.returncode}: {err}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
    return first_at, took, lines, cpu, (proc_stats(hub)[1] - hub_cpu) if hub else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--gpus", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()
    hubctl = console_script()
    with tempfile.TemporaryDirectory(prefix="bench-listings-") as tmp:
        work = Path(tmp)
        url, server = postgres_url() if args.db == "postgresql" else (None, None)
        began = time.perf_counter()
        fill(work / "hub", args.nodes, args.gpus, url)
        filled = time.perf_counter() - began
        hub, address = start_hub(work / "hub", *(["--db", url] if url else []), secure=True)
        try:
            config = work / "hubctl.yaml"
            write_config(config, address, work / "hub")
            env = {k: v for k, v in os.environ.items()
                   if k not in ("GPUFLEET_HUB", "GPUFLEET_INSECURE")}  # fmt: skip
            env["GPUFLEET_CONFIG"] = str(config)
            timed([hubctl, "--help"], env)
            print(f"{args.nodes} nodes x {args.gpus} GPUs ({args.db} filled in {filled:.1f} s); "
                  f"hub {address}, mutual TLS; {args.runs} run(s) each, medians; load "
                  f"average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")  # fmt: skip
            print(f"{'COMMAND':<16} {'FIRST LINE':>10} {'ALL':>8} {'LINES':>7} "
                  f"{'HUBCTL CPU':>10} {'HUB CPU':>8}")  # fmt: skip
            for command in COMMANDS:
                runs = [timed([hubctl, *command], env, hub.pid) for _ in range(args.runs)]
                first, whole, _, cpu, hub_cpu = (
                    statistics.median(r[i] for r in runs) for i in range(5)
                )
                label = " ".join(["hubctl", *command])
                print(f"{label:<16} {first:>9.3f}s {whole:>7.3f}s {int(runs[-1][2]):>7} "
                      f"{cpu:>9.3f}s {hub_cpu:>7.2f}s")  # fmt: skip
        finally:
            stop(hub)
            if server is not None:
                server.stop()


if __name__ == "__main__":
    main()
