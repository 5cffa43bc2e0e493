"""One hub with many agents: time to all ready, memory, CPU, drops, listings, restart.

    python -m bench.hub_agents --agents 1000 --tls --window 60 --listings --restart
    python -m bench.hub_agents --agents 10000 --procs 10 --tls --db postgresql --window 600
    python -m bench.hub_agents --agents 5 --heartbeat 0.5 --window 1 --tls   # smallest

Starts a real hub (SQLite in a temporary state dir; or a throwaway PostgreSQL server, or
--db-url) and `--procs` simulator processes (bench/fleet_sim.py) that run the agents, each
a real AgentLink on its own channel; with --tls each has its own certificate (issued in bulk,
bench/fleet_certs.py) over mutual TLS. Prints the time until all are ready, the hub's RSS
(idle, connected, per agent), its CPU over the window, the agents dropped or reconnecting
in the window, heartbeats per second, the database's growth, with --listings the time of
`hubctl nodes|gpus|status`, with --restart how a restarted hub converges; last, one markdown
table row with every figure.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bench import fleet_sim
from bench.cli_latency import console_script, write_config
from bench.common import (
    admin_credentials,
    channel,
    free_port,
    postgres_url,
    proc_stats,
    ready_nodes,
    spawn,
    start_hub,
    stop,
    wait,
)
from bench.fleet_certs import enroll_fleet
from bench.fleet_measure import Listing, SimStats, db_bytes, heartbeat_counter, listing
from gpufleet.v1 import hub_pb2_grpc

LISTINGS = ("nodes", "gpus", "status")
# The simulators stand in for agents on other machines: they take the CPU the hub leaves.
# At the same priority, 10,000 agents' failed dials while the hub restarted starved its start
# (31 s to listen, where it takes about 1 s alone).
SIM_NICE = 10


@dataclass
class Fleet:
    """The hub and the simulators of one run."""

    args: argparse.Namespace
    work: Path
    db_url: str | None
    hub: subprocess.Popen[bytes] | None = None
    address: str = ""
    http: str = ""
    sims: tuple[subprocess.Popen[str], ...] = ()

    @property
    def state(self) -> Path:
        return self.work / "hub"

    @property
    def stats_files(self) -> list[Path]:
        return [self.work / f"sim-{k}.json" for k in range(len(self.sims))]

    def start_hub(self, serving_within: float = 30.0) -> None:
        db = ["--db", self.db_url] if self.db_url else []
        self.http = self.http or f"127.0.0.1:{free_port()}"
        self.hub, self.address = start_hub(
            self.state, "--heartbeat-interval", str(self.args.heartbeat), "--http", self.http,
            *db, *self.args.hub_arg, secure=self.args.tls, address=self.address or None,
            serving_within=serving_within,
        )  # fmt: skip

    def stub(self) -> hub_pb2_grpc.HubStub:
        credentials = admin_credentials(self.state) if self.args.tls else None
        return hub_pb2_grpc.HubStub(channel(self.address, credentials))

    def start_sims(self, certs: Path | None) -> None:
        n, k = self.args.agents, self.args.procs or max(1, math.ceil(self.args.agents / 1000))
        sims = []
        for i in range(k):
            first, count = i * n // k, (i + 1) * n // k - i * n // k
            tls = ["--certs", str(certs), "--ca", str(self.state / "pki" / "ca.crt")]
            sims.append(spawn(
                ["-m", "bench.hub_agents", "--simulate", "--hub", self.address,
                 "--first", str(first), "--count", str(count),
                 "--stats", str(self.work / f"sim-{i}.json"), *(tls if certs else []),
                 "--telemetry", self.args.telemetry],
                log=self.work / f"sim-{i}.log", nice=SIM_NICE,
            ))  # fmt: skip
        self.sims = tuple(sims)

    def sim_stats(self) -> SimStats:
        return SimStats.read(self.stats_files)

    def wait_ready(self, timeout: float, since: SimStats | None = None) -> float:
        """Until every agent has its Welcome (each a new one `since` those counts) and the
        hub calls every node ready; when (monotonic) every agent had its Welcome."""
        assert self.hub is not None
        n: int = self.args.agents
        before = since or SimStats()

        def welcomed() -> bool:
            now = self.sim_stats()
            return now.connected == n and now.connects - before.connects >= n

        wait(welcomed, timeout, *self.sims, self.hub)
        welcomed_at = time.monotonic()
        stub = self.stub()
        wait(lambda: ready_nodes(stub) == n, timeout, *self.sims, self.hub)
        return welcomed_at

    def stop(self) -> None:
        stop(*self.sims, self.hub)


@dataclass
class Restart:
    """A restart's phases, in seconds from the new hub's start: its port accepting, its
    health call answered, every agent welcomed, every node ready."""

    listening: float
    serving: float
    welcomed: float
    ready: float
    over: SimStats


def restart(fleet: Fleet, timeout: float) -> Restart:
    """SIGTERM the hub, start it again on the same state and port; its phases and the
    simulators' counts over the restart."""
    before = fleet.sim_stats()
    stop(fleet.hub)
    host, _, port = fleet.address.rpartition(":")
    began = time.monotonic()
    listening = Accepting(host, int(port), began)
    fleet.start_hub(serving_within=timeout)  # its health call waits behind the reconnect storm
    serving = time.monotonic() - began
    welcomed = fleet.wait_ready(timeout, since=before) - began
    ready = time.monotonic() - began
    return Restart(listening.seconds(), serving, welcomed, ready, fleet.sim_stats().since(before))


class Accepting(threading.Thread):
    """When a port first accepts a TCP connection, polled every 20 ms from `began`."""

    def __init__(self, host: str, port: int, began: float) -> None:
        super().__init__(daemon=True)
        self.host, self.port, self.began = host, port, began
        self.at = math.nan
        self.start()

    def run(self) -> None:
        while time.monotonic() - self.began < 600:
            try:
                socket.create_connection((self.host, self.port), timeout=1).close()
            except OSError:
                time.sleep(0.02)
                continue
            self.at = time.monotonic() - self.began
            return

    def seconds(self) -> float:
        self.join(1)
        return self.at


def listings(fleet: Fleet) -> dict[str, Listing]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("GPUFLEET_HUB", "GPUFLEET_INSECURE", "GPUFLEET_CONFIG")}  # fmt: skip
    env["COLUMNS"] = "200"
    if fleet.args.tls:
        env["GPUFLEET_CONFIG"] = str(fleet.work / "hubctl.yaml")
        write_config(Path(env["GPUFLEET_CONFIG"]), fleet.address, fleet.state)
    else:
        env.update(GPUFLEET_HUB=fleet.address, GPUFLEET_INSECURE="1")
    hubctl = console_script()
    return {name: listing([hubctl, name], env) for name in LISTINGS}


def main() -> None:
    if sys.argv[1:2] == ["--simulate"]:  # one simulator process (bench/fleet_sim.py)
        fleet_sim.main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--procs", type=int, default=0, help="simulators (default: 1 per 1000)")
    parser.add_argument("--heartbeat", type=float, default=5.0, help="--heartbeat-interval")
    parser.add_argument("--window", type=float, default=60.0, help="seconds to measure")
    parser.add_argument("--tls", action="store_true", help="mutual TLS, a certificate each")
    parser.add_argument("--telemetry", choices=["fixed", "busy"], default="fixed",
                        help="GPU readings: fixed, or moving at every read")  # fmt: skip
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--db-url", help="an existing database instead (SQLAlchemy URL)")
    parser.add_argument("--listings", action="store_true", help="time hubctl listings")
    parser.add_argument("--restart", action="store_true", help="restart the hub, time recovery")
    parser.add_argument("--ready-timeout", type=float, default=600.0)
    parser.add_argument("--hub-arg", action="append", default=[], metavar="ARG",
                        help="one more hub argument (repeat)")  # fmt: skip
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gpufleet-bench-"))
    server = None
    db_url = args.db_url
    if args.db == "postgresql" and db_url is None:
        db_url, server = postgres_url()
    fleet = Fleet(args, work, db_url)
    done = False
    try:
        run(fleet)
        done = True
    finally:
        fleet.stop()
        if server is not None:
            server.stop()
        if done:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work} (logs)")


def run(fleet: Fleet) -> None:
    args, n = fleet.args, fleet.args.agents
    certs = enroll_fleet(fleet.state, fleet.db_url, n) if args.tls else None
    fleet.start_hub()
    assert fleet.hub is not None
    time.sleep(1.0)
    idle_rss, _ = proc_stats(fleet.hub.pid)
    started = time.monotonic()
    fleet.start_sims(certs)
    fleet.wait_ready(args.ready_timeout)
    ready_s = time.monotonic() - started
    time.sleep(args.heartbeat)  # settle into the steady heartbeat rhythm
    before, _, cpu0 = fleet.sim_stats(), *proc_stats(fleet.hub.pid)
    sims0 = sum(proc_stats(sim.pid)[1] for sim in fleet.sims)
    beats0, db0 = heartbeat_counter(fleet.http), db_bytes(fleet.state, fleet.db_url)
    t0 = time.monotonic()
    time.sleep(args.window)
    elapsed = time.monotonic() - t0
    rss, cpu1 = proc_stats(fleet.hub.pid)
    sims_cpu = 100 * (sum(proc_stats(sim.pid)[1] for sim in fleet.sims) - sims0) / elapsed
    beats1, db1 = heartbeat_counter(fleet.http), db_bytes(fleet.state, fleet.db_url)
    window = fleet.sim_stats().since(before)
    still = ready_nodes(fleet.stub())
    dropped = window.connects + (n - window.connected) + window.failures
    if beats0 is not None and beats1 is not None:
        rate, source = (beats1 - beats0) / elapsed, "hub /metrics"
    else:
        rate, source = window.heartbeats / elapsed, "agents' count"
    growth = (db1 - db0) / elapsed * 86400 * 1000 / n
    cpu = 100 * (cpu1 - cpu0) / elapsed
    mode = "mutual TLS" if args.tls else "plaintext"
    db = "PostgreSQL" if fleet.db_url else "SQLite"
    print(f"agents                     {n} in {len(fleet.sims)} simulators (nice {SIM_NICE}), "
          f"{mode}, {db}, heartbeat {args.heartbeat:g} s, {args.telemetry} telemetry")  # fmt: skip
    print(f"all ready after            {ready_s:.1f} s")
    print(f"still ready after window   {still}/{n}")
    print(f"dropped in window          {dropped} ({window.connects} reconnects, "
          f"{window.failures} failed attempts, {n - window.connected} not connected)")  # fmt: skip
    print(f"hub RSS idle / connected   {idle_rss / 1024:.1f} / {rss / 1024:.1f} MiB "
          f"({(rss - idle_rss) / n:.1f} KiB per agent)")  # fmt: skip
    print(f"hub CPU                    {cpu:.1f} % of one core over {elapsed:.0f} s")
    print(f"simulators' CPU            {sims_cpu:.1f} % of one core (the hub's machine)")
    print(f"heartbeats                 {rate:.0f}/s ({source})")
    print(f"database growth            {db1 - db0} bytes in {elapsed:.0f} s "
          f"({growth / 1e6:.1f} MB per 1,000 agents per day)")  # fmt: skip
    cells = [f"{n}", db, mode, f"{ready_s:.1f} s", f"{rss / 1024:.0f} MiB",
             f"{(rss - idle_rss) / n:.0f} KiB", f"{cpu:.0f} %", f"{dropped}", f"{rate:.0f}",
             f"{growth / 1e6:.1f} MB"]  # fmt: skip
    if args.listings:
        for name, timed in listings(fleet).items():
            print(f"{f'hubctl {name}':<26} first line {timed.first_s:.2f} s, "
                  f"all {timed.end_s:.2f} s ({timed.lines} lines)")  # fmt: skip
            cells.append(f"{timed.first_s:.2f} / {timed.end_s:.2f} s")
    else:
        cells += ["-"] * len(LISTINGS)
    if args.restart:
        again = restart(fleet, args.ready_timeout)
        took, over = again.ready, again.over
        print(f"restart: all ready after   {took:.1f} s ({over.failures} failed attempts, "
              f"{over.cut_before_welcome()} cut before Welcome)")  # fmt: skip
        print(f"  from the new hub's start: listening {again.listening:.1f} s, health answered "
              f"{again.serving:.1f} s, all welcomed {again.welcomed:.1f} s")  # fmt: skip
        for text, count in over.reasons.most_common(5):
            print(f"  {count:>7}  {text}")
        cells += [f"{took:.1f} s", f"{over.failures}", f"{over.cut_before_welcome()}"]
    else:
        cells += ["-", "-", "-"]
    print(
        "| agents | db | link | ready | RSS | per agent | CPU | dropped | beats/s | DB/1k/day "
        "| nodes | gpus | status | restart ready | failed | cut |"
    )
    print(f"| {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
