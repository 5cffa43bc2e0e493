"""Model switch overhead: a llama.cpp model switched through hub and agent against the same
steps done by hand, on real llama-cpp-python servers.

    python -m bench.model_switch --runs 7
    python -m bench.model_switch --runs 1     # smallest: one switch each way, ~20 s

Two tiny random-weight GGUF models (tests/support/tiny_gguf.py: tiny-a and tiny-b, llama.cpp
on the cpu backend) alternate on one node, so every run is a real switch (stop one server,
start the other, wait until /v1/models lists it). "Through gpufleet" is timed from the Models
SwitchModel call to the operation's end (gRPC, no hubctl start-up); the agent runs the server
from this interpreter's environment (--llama-env cpu=sys.prefix). "By hand" terminates the
server, starts the same command the hub generates (hub.models.deploy.host_process) and polls
/v1/models at the interval of the agent's health check until the model is listed. Prints the
medians and their ratio (goal: at most 1.05).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import grpc

from bench.common import free_port, hub_stub, ready_count, start_agent, start_hub, stop, wait
from gpufleet.process import ProcessSpec
from gpufleet.v1 import hub_pb2, hub_pb2_grpc, models_pb2, models_pb2_grpc
from hub.models.deploy import Placement, host_process
from hub.models.load import load_file
from tests.support import podman

NODE = "bench"
MODELS = ("tiny-a", "tiny-b")
MODEL = """\
name: {name}
description: a tiny random-weight model for the model switch benchmark
engine: llama-cpp
source: {{path: {path}}}
llama_cpp: {{n_ctx: 256, backend: cpu}}
"""


def write_models(work: Path) -> Path:
    """tiny-a and tiny-b: their GGUF files and definitions; the models directory."""
    from tests.support.tiny_gguf import write_tiny_gguf

    (work / "gguf").mkdir()
    models = work / "models"
    models.mkdir()
    for seed, name in enumerate(MODELS, 1):
        path = write_tiny_gguf(work / "gguf" / f"{name}.gguf", seed=seed, name=name)
        (models / f"{name}.yaml").write_text(MODEL.format(name=name, path=path))
    return models


def listed(url: str, name: str) -> bool:
    """/v1/models answers 200 naming `name` (the agent's readiness check for llama.cpp)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            found = json.loads(reply.read()) if reply.status == 200 else {}
    except (OSError, ValueError):
        return False
    return any(entry.get("id") == name for entry in found.get("data") or [])


class ByHand:
    """The same switch as an operator would script it: terminate, start, poll."""

    def __init__(self, work: Path, models: Path, port: int) -> None:
        self.work, self.port = work, port
        self.python = str(Path(sys.prefix) / "bin" / "python")  # what --llama-env cpu= runs
        self.specs: dict[str, ProcessSpec] = {}
        for name in MODELS:
            [model] = load_file(models / f"{name}.yaml")
            self.specs[name] = host_process(model, Placement((), port))
        self.server: subprocess.Popen[bytes] | None = None

    def start(self, name: str) -> None:
        spec = self.specs[name]
        assert spec.health is not None
        with (self.work / f"by-hand-{name}.log").open("ab") as log:
            self.server = subprocess.Popen(
                [self.python, *spec.args], env={**os.environ, **dict(spec.env)},
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        while not listed(spec.health.url, spec.health.expect_model):
            if self.server.poll() is not None:
                raise SystemExit(f"by hand: the {name} server exited with "
                                 f"{self.server.returncode}; see {log.name}")  # fmt: skip
            time.sleep(spec.health.interval_s)

    def switch(self, name: str) -> float:
        started = time.perf_counter()
        stop(self.server)
        self.start(name)
        return time.perf_counter() - started


def finish(hub: hub_pb2_grpc.HubStub, reply: hub_pb2.OperationRef, what: str) -> None:
    for event in hub.WatchOperation(hub_pb2.WatchOperationRequest(id=reply.id)):
        if event.HasField("operation"):
            if event.operation.status != "succeeded":
                raise SystemExit(f"{what} failed: {event.operation}")
            return


def through_hub(
    hub: hub_pb2_grpc.HubStub, models: models_pb2_grpc.ModelsStub, name: str, port: int
) -> float:
    started = time.perf_counter()
    reply = models.SwitchModel(models_pb2.SwitchModelRequest(
        name=name, targets=hub_pb2.Targets(nodes=[NODE]), port=port), timeout=30)  # fmt: skip
    finish(hub, reply, f"switch to {name}")
    return time.perf_counter() - started


def leftovers(work: Path) -> list[int]:
    """Processes whose command line names the benchmark's directory (model servers and
    their supervisors, should a stop have failed)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            if str(work) in (proc / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(proc.name))
    return [pid for pid in found if pid != os.getpid()]


def kill_leftovers(work: Path) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in leftovers(work):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 10
        while leftovers(work) and time.monotonic() < deadline:
            time.sleep(0.1)


def measure(work: Path, runs: int) -> tuple[list[float], list[float]]:
    """Seconds per switch through hub and agent, then by hand, `runs` each."""
    models_dir = write_models(work)
    port = free_port()
    hub_process, address = start_hub(work / "hub", "--models", str(models_dir))
    agent = None
    hub_times: list[float] = []
    hand_times: list[float] = []
    try:
        agent = start_agent(address, NODE, work / "agent", "--gpu-probe", "none", "--gpu-runtime",
                            "none", "--llama-env", f"cpu={sys.prefix}",
                            env={**os.environ, **podman.env()})  # fmt: skip
        hub = hub_stub(address)
        models = models_pb2_grpc.ModelsStub(grpc.insecure_channel(address))
        wait(lambda: ready_count(hub) == 1, 30, agent, hub_process)
        through_hub(hub, models, MODELS[0], port)  # warm up: the node runs tiny-a
        for i in range(runs):
            hub_times.append(through_hub(hub, models, MODELS[(i + 1) % 2], port))
        running = MODELS[runs % 2]
        finish(hub, models.StopModel(models_pb2.StopModelRequest(
            name=running, targets=hub_pb2.Targets(nodes=[NODE])), timeout=30),
            f"stop {running}")  # fmt: skip
        hand = ByHand(work, models_dir, port)
        try:
            hand.start(MODELS[0])
            for i in range(runs):
                hand_times.append(hand.switch(MODELS[(i + 1) % 2]))
        finally:
            stop(hand.server)
    finally:
        stop(agent, hub_process)
        kill_leftovers(work)
    return hub_times, hand_times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    try:
        import gguf  # noqa: F401
        import llama_cpp.server  # noqa: F401
    except ImportError as exc:
        raise SystemExit(f"{exc.name} is missing: pip install -e '.[llama]'") from None
    with tempfile.TemporaryDirectory(prefix="gpufleet-bench-model-") as tmp:
        hub_times, hand_times = measure(Path(tmp), args.runs)
    hub_median, hand_median = statistics.median(hub_times), statistics.median(hand_times)
    print(f"runs                            {args.runs} switches each way (tiny-a <-> tiny-b, "
          "llama.cpp on the cpu)")  # fmt: skip
    print(f"through hub + agent             median {hub_median:.2f} s  "
          f"(min {min(hub_times):.2f}, max {max(hub_times):.2f})")  # fmt: skip
    print(f"by hand (stop + start + poll)   median {hand_median:.2f} s  "
          f"(min {min(hand_times):.2f}, max {max(hand_times):.2f})")  # fmt: skip
    print(f"ratio of medians                {hub_median / hand_median:.3f}  (goal <= 1.05)")


if __name__ == "__main__":
    main()
