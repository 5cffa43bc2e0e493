"""The hub stays responsive under heavy requests: placement and parsing run in its workers.

A real hub with 40 simulated agents (one process of real AgentLink clients, 4 GPUs each:
160 GPUs, the `bench.hub_agents` simulator) and a configuration of 120 services.
While `optimal` previews over every GPU and a large `configs validate` run, `hubctl nodes`
answers within 1 s, extra concurrent previews are refused with one line, and no agent stream is
closed. Hostile configuration files get one line through hubctl and the API.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from subprocess import CompletedProcess

import grpc
import pytest

from gpufleet.v1 import hub_pb2, hub_pb2_grpc
from tests.support.procs import Cluster, Daemon, wait_until

AGENTS = 40
SERVICES = 120
LIMIT_S = "1"  # optimal's time limit: the running preview and the one waiting fit hubctl's 10 s


def heavy_configuration(services: int, padding: int = 0) -> str:
    """A configuration of many GPU services (a tenth tensor parallel, a quarter adjustable);
    `padding` bytes of extra compose content make it costly to parse."""
    lines = ["x-gpufleet:", "  description: many services", "  use_case: tests", "  services:"]
    for k in range(services):
        vram = 1 + (k * 7) % 60
        count = 2 if k % 10 == 0 else 1
        lines += [f"    s{k:04d}:", f"      vram_gb: {vram}", f"      gpu_count: {count}",
                  "      health: {url: 'http://127.0.0.1:9/health'}",
                  "      drain: none"]  # fmt: skip
        if k % 4 == 0:
            lines.append(f"      vram_budget: {{min_gb: {vram / 2}}}")
    lines.append("services:")
    for k in range(services):
        lines += [f"  s{k:04d}:", "    image: busybox", "    labels: {role: test, tier: gpu}"]
    text = "\n".join(lines) + "\n"
    if padding:
        row = "  - {name: padding, value: [1, 2, 3], note: 'makes the file slow to parse'}\n"
        text += "x-padding:\n" + row * ((padding - len(text)) // len(row))
    return text


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Cluster]:
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "heavy.yaml").write_text(heavy_configuration(SERVICES))
    cluster = Cluster(tmp_path, None, heartbeat=1.0, configs=configs, secure=False)
    try:
        cluster.start_hub()
        simulator = Daemon(
            "simulator",
            ["-m", "bench.hub_agents", "--simulate", "--hub", cluster.address,
             "--count", str(AGENTS), "--stats", str(tmp_path / "simulator.json")],
            tmp_path / "logs" / "simulator.log",
        )  # fmt: skip
        cluster.daemons.append(simulator)
        simulator.start()

        def all_ready() -> bool:
            assert simulator.running, simulator.log()
            ready: int = sum(n["status"] == "ready" for n in cluster.json("nodes"))
            return ready == AGENTS

        wait_until(all_ready, 90, f"{AGENTS} simulated agents to be ready", every=0.5)
        yield cluster
    finally:
        cluster.close()


def test_nodes_answers_while_heavy_placement_and_parsing_run(
    fleet: Cluster, tmp_path: Path
) -> None:
    big = tmp_path / "big.yaml"
    big.write_text(heavy_configuration(SERVICES, padding=100 * 1024))
    results: dict[str, CompletedProcess[str]] = {}

    def run(key: str, *args: str) -> None:
        results[key] = fleet.hubctl(*args, check=False)

    preview = ("assign", "preview", "--config", "heavy", "--strategy", "optimal",
               "--time-limit", LIMIT_S)  # fmt: skip
    heavy = [threading.Thread(target=run, args=(f"preview-{i}", *preview)) for i in range(3)]
    heavy.append(threading.Thread(target=run, args=("validate", "configs", "validate", str(big))))
    for thread in heavy:
        thread.start()
    latencies, rpcs = [], []
    with fleet.hub.channel() as channel:
        stub = hub_pb2_grpc.HubStub(channel)
        while any(thread.is_alive() for thread in heavy):
            started = time.monotonic()
            nodes = fleet.json("nodes")
            latencies.append(time.monotonic() - started)
            assert sum(n["status"] == "ready" for n in nodes) == AGENTS
            started = time.monotonic()
            stub.ListNodes(hub_pb2.ListNodesRequest(), timeout=10)
            rpcs.append(time.monotonic() - started)
    for thread in heavy:
        thread.join()
    print(
        f"during heavy previews and a {big.stat().st_size // 1024} KiB validate: "
        f"hubctl nodes {len(latencies)} calls, median {statistics.median(latencies):.2f} s, "
        f"max {max(latencies):.2f} s; ListNodes RPC median {statistics.median(rpcs) * 1000:.0f}"
        f" ms, max {max(rpcs) * 1000:.0f} ms"
    )

    previews = [results[f"preview-{i}"] for i in range(3)]
    done = [p for p in previews if p.returncode == 0]
    refused = [p for p in previews if p.returncode != 0]
    assert done and all("heavy with optimal" in p.stdout for p in done), previews
    # One preview runs, one waits for it, and the third is refused at once in one line.
    assert len(refused) == 1, previews
    assert refused[0].stderr.strip().count("\n") == 0
    assert "busy with placement (1 running, 1 waiting): try again in a moment" in refused[0].stderr
    assert results["validate"].returncode == 0, results["validate"]
    # The bound: the hub answers every call within 1 s (typically in milliseconds), and
    # hubctl's answer, whose own start takes ~0.25 s of CPU, typically within 1 s on a machine
    # whose cores the workers (niced) and other test runs share.
    assert max(rpcs) < 1.0, rpcs
    assert statistics.median(latencies) < 1.0, latencies

    time.sleep(2.5)  # more than two heartbeat intervals: a closed stream would show
    assert fleet.statuses() == {f"sim-{i:05d}": "ready" for i in range(AGENTS)}
    log = fleet.hub.log()
    assert "closing stream" not in log and " is down" not in log, log[-3000:]


BOMB = "\n".join(
    ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    + [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]" for i in range(8)]
)


def test_hostile_files_get_one_line_and_leave_the_others_working(tmp_path: Path) -> None:
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "heavy.yaml").write_text(heavy_configuration(3))
    (configs / "bomb.yaml").write_text(BOMB)
    (configs / "deep.yaml").write_text("a: " + "[" * 50_000 + "]" * 50_000)
    (configs / "latin.yaml").write_bytes(b"x-gpufleet:\n  description: caf\xe9\n")
    cluster = Cluster(tmp_path, None, configs=configs, secure=False)
    try:
        cluster.start_hub()
        listed = cluster.json("configs")
        assert [c["name"] for c in listed["configurations"]] == ["heavy"]
        errors = listed["errors"]
        assert [e.split(":")[0] for e in errors] == [
            str(configs / n) for n in ("bomb.yaml", "deep.yaml", "latin.yaml")
        ]
        # Switching still finds the good one (and reaches its no-nodes check); the bad ones are
        # unknown, and the line lists the good one.
        switched = cluster.hubctl("switch", "heavy", "--all", check=False)
        assert switched.stderr.strip() == "hubctl: no nodes given: name them with --node, or --all"
        switched = cluster.hubctl("switch", "bomb", "--all", check=False)
        assert switched.stderr.strip() == (
            "hubctl: unknown configuration 'bomb': `hubctl configs` lists them (heavy)"
        )

        for name, text, expected in [
            ("bomb.yaml", BOMB.encode(), "refused: expands to more than 100,000 values"),
            ("deep.yaml", b"a: " + b"[" * 50_000, "refused: nests deeper than 32 levels"),
            ("latin.yaml", b"description: caf\xe9\n", "not UTF-8 (byte 16); save it as UTF-8"),
            ("huge.yaml", b"a: " + b"x" * 300_000, "larger than the 256 KiB"),
        ]:
            path = tmp_path / name
            path.write_bytes(text)
            found = cluster.hubctl("configs", "validate", str(path), check=False)
            lines = (found.stdout + found.stderr).strip().splitlines()
            assert found.returncode == 1 and len(lines) == 1, found
            assert expected in lines[0] and "internal error" not in lines[0], lines

        # A client that sends bytes that are not UTF-8 as the content gets one line too.
        with cluster.hub.channel() as channel:
            raw = channel.unary_unary(
                "/gpufleet.v1.Hub/ValidateConfiguration",
                request_serializer=lambda data: data,
                response_deserializer=hub_pb2.ValidateConfigurationResponse.FromString,
            )
            content = b"description: caf\xe9\n"
            request = b"\x0a\x09bad.yaml\x12" + bytes([len(content)]) + content
            with pytest.raises(grpc.RpcError) as caught:
                raw(request, timeout=10)
        details = caught.value.details() or ""  # type: ignore[attr-defined]
        code = caught.value.code()  # type: ignore[attr-defined]
        assert code == grpc.StatusCode.INVALID_ARGUMENT, details
        assert details.startswith("malformed request: ") and "\n" not in details, details
        assert cluster.hub.running
    finally:
        cluster.close()
