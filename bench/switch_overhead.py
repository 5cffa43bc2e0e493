"""Switch overhead: hub + agent against the same steps done by hand, on real Podman.

    python -m bench.switch_overhead --runs 7
    python -m bench.switch_overhead --runs 1     # smallest: one switch each way, ~15 s

Alternates the test configurations alpha and beta on one node, so every run is a real
switch (compose down of one, compose up of the other, health wait). "Through gpufleet" is
timed from the Switch call to the operation's end (gRPC, no hubctl start-up); "by hand" runs
podman-compose down, podman-compose up -d and polls the same health URL at the same
interval. Prints the medians and their ratio (goal: at most 1.10).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from agent.projects import ProjectStore
from bench.common import REPO, free_port, hub_stub, ready_count, start_agent, start_hub, stop, wait
from gpufleet.policy import Policy
from gpufleet.v1 import hub_pb2, hub_pb2_grpc
from hub.configs import load_configuration
from tests.support import podman

CONFIGS = REPO / "tests" / "fixtures" / "switch-configs"


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


class ByHand:
    """The same switch as an operator would script it: compose down, compose up, poll."""

    def __init__(self, work: Path, env: dict[str, str], port: int) -> None:
        self.env, self.port = env, port
        policy = Policy(allow_bind_roots=(str(work),))  # the configs bind METRICS_DIR
        store = ProjectStore(work / "by-hand", "none", policy, env)  # the file the agent runs
        self.files = {}
        for name in ("alpha", "beta"):
            config = load_configuration(CONFIGS / f"{name}.yaml")
            self.files[name] = store.write(name, config.text, config.digest).compose_file

    def compose(self, name: str, *args: str) -> None:
        subprocess.run([sys.executable, "-m", "podman_compose", "-p", f"hand-{name}", "-f",
                        str(self.files[name]), *args], env=self.env, check=True,
                       capture_output=True)  # fmt: skip

    def up(self, name: str) -> None:
        self.compose(name, "up", "-d")
        while not healthy(f"http://127.0.0.1:{self.port}/health"):
            time.sleep(0.2)

    def switch(self, previous: str, config: str) -> float:
        started = time.perf_counter()
        self.compose(previous, "down")
        self.up(config)
        return time.perf_counter() - started


def through_hub(stub: hub_pb2_grpc.HubStub, config: str, node: str) -> float:
    started = time.perf_counter()
    reply = stub.Switch(hub_pb2.SwitchRequest(
        configuration=config, targets=hub_pb2.Targets(nodes=[node])), timeout=30)  # fmt: skip
    for event in stub.WatchOperation(hub_pb2.WatchOperationRequest(id=reply.id)):
        if event.HasField("operation"):
            if event.operation.status != "succeeded":
                raise SystemExit(f"switch failed: {event.operation}")
            break
    return time.perf_counter() - started


def measure(work: Path, runs: int) -> tuple[list[float], list[float]]:
    """Seconds per switch through hub and agent, then by hand, `runs` each."""
    (work / "metrics").mkdir()
    (work / "metrics" / "metrics").write_text("test_requests_running 0\n")
    port = free_port()
    variables = {"WEB_PORT": str(port), "METRICS_DIR": str(work / "metrics"), "LOAD_DELAY": "1"}
    env = {**os.environ, **podman.env(), **variables}
    agent_args = [arg for key, value in variables.items() for arg in ("--env", f"{key}={value}")]
    hub, address = start_hub(work / "hub", "--configs", str(CONFIGS))
    agent = None
    hub_times: list[float] = []
    hand_times: list[float] = []
    try:
        agent = start_agent(address, "bench", work / "agent", "--gpu-probe", "none",
                            "--gpu-runtime", "none", "--allow-bind-roots", str(work / "metrics"),
                            *agent_args, env=env)  # fmt: skip
        stub = hub_stub(address)
        wait(lambda: ready_count(stub) == 1, 30, agent, hub)
        through_hub(stub, "alpha", "bench")  # warm up: the node runs alpha
        for i in range(runs):
            hub_times.append(through_hub(stub, "beta" if i % 2 == 0 else "alpha", "bench"))
        stopped = stub.Stop(hub_pb2.StopRequest(targets=hub_pb2.Targets(nodes=["bench"])))
        for _ in stub.WatchOperation(hub_pb2.WatchOperationRequest(id=stopped.id)):
            pass
        hand = ByHand(work, env, port)
        hand.up("alpha")
        previous = "alpha"
        for i in range(runs):
            config = "beta" if i % 2 == 0 else "alpha"
            hand_times.append(hand.switch(previous, config))
            previous = config
        hand.compose(previous, "down")
    finally:
        stop(agent, hub)
        podman.remove_projects("gf-bench")
        podman.remove_projects("hand-")
    return hub_times, hand_times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    try:
        podman.build_image()
    except podman.PodmanMissing as exc:
        raise SystemExit(str(exc)) from None
    with tempfile.TemporaryDirectory(prefix="gpufleet-bench-switch-") as tmp:
        hub_times, hand_times = measure(Path(tmp), args.runs)
    hub_median, hand_median = statistics.median(hub_times), statistics.median(hand_times)
    print(f"runs                       {args.runs} switches each way (alpha <-> beta, 1 s load)")
    print(f"through hub + agent        median {hub_median:.2f} s  "
          f"(min {min(hub_times):.2f}, max {max(hub_times):.2f})")  # fmt: skip
    print(f"by hand (compose + poll)   median {hand_median:.2f} s  "
          f"(min {min(hand_times):.2f}, max {max(hand_times):.2f})")  # fmt: skip
    print(f"ratio of medians           {hub_median / hand_median:.3f}  (goal <= 1.10)")


if __name__ == "__main__":
    main()
