"""Time from a `switch --all` to each node's first task, with many agents.

    python -m bench.switch_fanout --agents 1000
    python -m bench.switch_fanout --agents 1000 --check
    python -m bench.switch_fanout --agents 3     # smallest, a few seconds
    python -m bench.switch_fanout --agents 10000 --db postgresql

A real hub and `--procs` simulator processes (bench/fanout_sim.py, one per AGENTS_PER_PROC
agents unless told, at nice 10 as agents on other machines) running `--agents` real agents between
them (AgentLink, TaskRunner, the task kinds, ProjectStore, HealthMonitor, 4 GPUs each); only
podman and the model servers are simulated. The configurations are the test ones (alpha,
beta) with a long health interval, so that idle agents do not load the machine the hub is
measured on (bench/fanout_sim.py says what else keeps them cheap). Every agent starts out running
`alpha`; the bench switches them all to `beta` at once (`--serial` unlimited) and prints when
the first drain began, the p50/p99/max of each agent's first task after the Switch call (the
wall clock is shared: one machine), the whole switch, the hub's CPU seconds per node, and
each simulator's CPU during the switch and while idle before it (a simulator near a whole core
measures itself, not the hub). With `--check` nothing runs on the agents: the times are those
of each node's result event instead. `--profile FILE` records the hub with py-spy during the
switch (py-spy on PATH).
"""

from __future__ import annotations

import argparse
import math
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC
from pathlib import Path

from bench import fanout_sim
from bench.common import (
    hub_stub,
    postgres_url,
    proc_stats,
    spawn,
    start_hub,
    stop,
    wait,
)
from bench.fanout_sim import EARLY_CHECK_S, health_slow
from gpufleet.v1 import hub_pb2, hub_pb2_grpc

SIM_NICE = 10
# A simulator's agents share its one event loop: the last of them reads its task after the
# others' tasks ran. At 2,000 agents the hub had handed every first task to gRPC 0.14 s after
# the first, while the agents read theirs by 1.61 s (p99) with 1,000 per process, 0.76 s with
# 500, 0.47 s with 250: the bench measured its own simulators. Real agents are one per host.
AGENTS_PER_PROC = 250
IDLE_S = 3.0  # the simulators' and the hub's idle CPU is measured over this, before the switch


def spread(agents: int, procs: int) -> list[tuple[int, int]]:
    """(first index, count) of the agents of each simulator process."""
    procs = max(1, min(procs, agents))
    base, extra = divmod(agents, procs)
    found, first = [], 0
    for p in range(procs):
        count = base + (p < extra)
        found.append((first, count))
        first += count
    return found


def quantiles(values: list[float]) -> str:
    if not values:
        return "none"
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]

    return f"{at(0.5):.2f} / {at(0.99):.2f} / {ordered[-1]:.2f} s"


def arrivals(work: Path) -> dict[str, tuple[float, str]]:
    """Each agent's first task: (wall time, task kind)."""
    found: dict[str, tuple[float, str]] = {}
    for path in work.glob("first-*.txt"):
        for line in path.read_text().splitlines():
            node, at, kind = line.split()
            found[node] = (float(at), kind)
    return found


def record_hub(pid: int, out: Path) -> subprocess.Popen[bytes] | None:
    """py-spy recording the hub until stopped (None: no py-spy)."""
    spy = shutil.which("py-spy")
    if spy is None:
        print("--profile: py-spy is not on PATH (pip install py-spy); not profiling")
        return None
    return subprocess.Popen([spy, "record", "--pid", str(pid), "--rate", "200", "--threads",
                             "--format", "speedscope", "--output", str(out), "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip


def cpu_of(processes: list[subprocess.Popen[str]]) -> list[float]:
    return [proc_stats(process.pid)[1] for process in processes]


def simulators_line(before: list[float], after: list[float], seconds: float) -> str:
    """Each simulator's CPU seconds over `seconds`, and the busiest one's share of a core."""
    used = [b - a for a, b in zip(before, after, strict=True)]
    each = " ".join(f"{u:.1f}" for u in used)
    return f"{sum(used):.1f} s ({each}; busiest {100 * max(used) / seconds:.0f} % of a core)"


def main() -> None:
    if sys.argv[1:2] == ["--simulate"]:  # one simulator process (bench/fanout_sim.py)
        fanout_sim.main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--procs", type=int, default=0,
                        help=f"simulators (default: one per {AGENTS_PER_PROC} agents)")  # fmt: skip
    parser.add_argument("--check", action="store_true", help="switch --check: nothing runs")
    parser.add_argument("--profile", type=Path, help="py-spy speedscope file of the hub")
    early = f"(0: never; default {EARLY_CHECK_S:g}; an agent's own: 1)"
    parser.add_argument(
        "--early-check",
        type=float,
        default=EARLY_CHECK_S,
        metavar="S",
        help=f"how often a simulated agent looks for a change to beat {early}",
    )
    parser.add_argument(
        "--idle",
        type=float,
        default=IDLE_S,
        metavar="S",
        help="seconds over which idle CPU is measured before the switch",
    )
    parser.add_argument("--nice", type=int, default=SIM_NICE,
                        help=f"the simulators' niceness (default {SIM_NICE})")  # fmt: skip
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite",
                        help="the hub's database (postgresql: a throwaway server)")  # fmt: skip
    args = parser.parse_args()
    procs = args.procs or math.ceil(args.agents / AGENTS_PER_PROC)
    work = Path(tempfile.mkdtemp(prefix="gpufleet-bench-fanout-"))
    configs = health_slow(work / "configs")
    server, database = None, []
    if args.db == "postgresql":
        url, server = postgres_url()
        database = ["--db", url]
    begun = time.time()
    hub: subprocess.Popen[bytes] | None = None
    sims: list[subprocess.Popen[str]] = []
    spy = None
    status = "unknown"
    try:
        hub, address = start_hub(work / "hub", "--configs", str(configs), *database)
        for p, (first, count) in enumerate(spread(args.agents, procs)):
            sims.append(spawn(
                ["-m", "bench.switch_fanout", "--simulate", "--hub", address, "--first", str(first),
                 "--agents", str(count), "--work", str(work / "hosts"), "--configs",
                 str(configs), "--out", str(work / f"first-{p}.txt"),
                 "--early-check", str(args.early_check)],
                log=work / f"simulator-{p}.log", nice=args.nice,
            ))  # fmt: skip
        stub = hub_stub(address)
        wait_ready(stub, args.agents, sims, hub)
        print(f"all ready on alpha         {time.time() - begun:.1f} s after the hub started",
              flush=True)  # fmt: skip
        # The hub's first read of the configurations starts its worker process (a second or
        # more on a loaded machine): measured here, apart from the switch.
        began = time.time()
        stub.ListConfigurations(hub_pb2.ListConfigurationsRequest(), timeout=60)
        warm = time.time() - began
        idle_sims, idle_hub = cpu_of(sims), proc_stats(hub.pid)[1]
        time.sleep(args.idle)
        idle = simulators_line(idle_sims, cpu_of(sims), args.idle)
        idle_hub = proc_stats(hub.pid)[1] - idle_hub
        if args.profile is not None:
            spy = record_hub(hub.pid, args.profile)
        cpu_before, sims_before = proc_stats(hub.pid)[1], cpu_of(sims)
        started = time.time()
        reply = stub.Switch(hub_pb2.SwitchRequest(
            configuration="beta", targets=hub_pb2.Targets(all=True), check=args.check,
        ), timeout=60)  # fmt: skip
        answered = time.time() - started
        results: list[float] = []
        done_at = last_result = 0.0  # when the hub made the done event; the last result came
        for event in stub.WatchOperation(hub_pb2.WatchOperationRequest(id=reply.id)):
            if event.HasField("operation"):
                status = event.operation.status
                done_at = event.at.ToDatetime(UTC).timestamp()
            elif event.step == "result":
                last_result = time.time()
            if event.step == "result":
                results.append(event.at.ToDatetime(UTC).timestamp() - started)
        finished = time.time()
        cpu = proc_stats(hub.pid)[1] - cpu_before
        busy = simulators_line(sims_before, cpu_of(sims), finished - started)
        found = arrivals(work)
        firsts = [at - started for at, _ in found.values()]
        drains = [at - started for at, kind in found.values() if kind == "drain"]
        print(f"agents                     {args.agents} ({len(sims)} processes, "
              f"podman at the edge; hub on {args.db})")  # fmt: skip
        print(f"configs worker start       {1000 * warm:.0f} ms (first read, before the switch)")
        print(f"Switch call answered       {1000 * answered:.0f} ms")
        if not args.check:
            if not drains:
                raise SystemExit(f"no drain reported; see {work}")
            print(f"switch --all to 1st drain  {1000 * min(drains):.0f} ms")
            print(f"first task p50/p99/max     {quantiles(firsts)} "
                  f"({len(firsts)} of {args.agents} agents)")  # fmt: skip
        print(f"node result p50/p99/max    {quantiles(results)} ({len(results)} nodes)")
        print(f"switch --all to all done   {finished - started:.2f} s ({status})")
        # Where the wait after the last result goes: the hub ending the operation (its done
        # event made) or the stream of every event to this client.
        print(f"done made / last result in {done_at - started:.2f} / {last_result - started:.2f} s "
              "(the hub's done event; the last node result received here)")  # fmt: skip
        print(f"hub CPU during the switch  {cpu:.1f} s "
              f"({1000 * cpu / max(1, args.agents):.1f} ms per node; "
              f"idle before: {100 * idle_hub / args.idle:.0f} % of a core)")  # fmt: skip
        print(f"simulators' CPU in switch  {busy}")
        print(f"simulators' CPU idle       {idle} over {args.idle:g} s before the switch")
        if status != "succeeded":
            raise SystemExit(f"the switch ended {status}; see {work}")
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        stop(*sims, hub)
        if server is not None:
            server.stop()
        if status == "succeeded":
            shutil.rmtree(work, ignore_errors=True)


def wait_ready(stub: hub_pb2_grpc.HubStub, agents: int, sims: list[subprocess.Popen[str]],
               hub: subprocess.Popen[bytes]) -> None:  # fmt: skip
    """Until every agent is ready on alpha (a timeout names the states the nodes are in)."""
    seen: Counter[tuple[str, str]] = Counter()

    def all_ready_on_alpha() -> bool:
        seen.clear()
        token = ""
        while True:  # every page
            page = stub.GetStatus(hub_pb2.GetStatusRequest(page_token=token), timeout=60)
            seen.update((n.state, n.configuration) for n in page.nodes)
            token = page.next_page_token
            if not token:
                return bool(seen[("ready", "alpha")] == agents)

    try:
        wait(all_ready_on_alpha, 120 + agents / 10, *sims, hub)
    except SystemExit as exc:
        states = ", ".join(f"{n} {s or '-'}/{c or '-'}" for (s, c), n in seen.items())
        raise SystemExit(f"{exc} (nodes: {states or 'none'})") from None


if __name__ == "__main__":
    main()
