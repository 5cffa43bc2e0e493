"""llama-cpp-python environments: cold build per backend, a second node from the cluster's wheel
cache, and the instant backend switch of a running model (issue 15).

    python -m bench.envs --backends cpu,vulkan --switches 5    # compiles each backend: 10-25 min
    python -m bench.envs --wheels DIR --backends cpu --switches 1   # smallest: no compile

A real hub and two real agents (nodes a and b). Per backend, node a builds the environment
through `Envs.BuildEnv` with `no_cache` (a cold compile), unless --wheels DIR holds a wheel of
that backend (KEY/meta.json + the wheel, the layout of the hub's cache and of the tests'): it
is put in the hub's cache first and node a installs it (reported as such). Node b then builds
the same environment: from the cluster cache (goal: under 60 s).

The switch: a tiny random-weight GGUF model (tests/support/tiny_gguf.py, llama.cpp) runs on
node b; `Models.SwitchBackend` moves it between two environments (the first two backends; with
one backend, its name and BACKEND-VERSION, the same environment under two names: still a real
stop and start), timed from the call to the operation's end, when the model answers again. The
model's own load time is measured apart, by hand: the same server command started from the
environment's python and polled until /v1/models lists the model. Lavapipe (Mesa's CPU Vulkan
device) is named with GGML_VK_VISIBLE_DEVICES=0, as on a host without a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import grpc

from bench.common import free_port, hub_stub, ready_count, start_agent, start_hub, stop, wait
from bench.model_switch import finish, kill_leftovers, listed
from gpufleet.v1 import envs_pb2, envs_pb2_grpc, hub_pb2, hub_pb2_grpc, models_pb2, models_pb2_grpc
from tests.support import podman
from tests.support.procs import INVENTORIES

VERSION = "0.3.36"
MODEL = """\
name: tiny
engine: llama-cpp
source: {{path: {path}}}
llama_cpp: {{n_ctx: 256, backend: cpu}}
vram_gb: 1
"""


def seed(wheels: Path | None, backends: list[str], cache: Path) -> set[str]:
    """Copy the wheels of `backends` found under `wheels` into the hub's cache; which ones."""
    found: set[str] = set()
    for meta in sorted(wheels.glob("*/meta.json")) if wheels else []:
        backend = json.loads(meta.read_text())["parts"]["backend"]
        if backend in backends and backend not in found:
            shutil.copytree(meta.parent, cache / meta.parent.name)
            found.add(backend)
    return found


def build(hub: hub_pb2_grpc.HubStub, envs: envs_pb2_grpc.EnvsStub, node: str, backend: str,
          no_cache: bool) -> float:  # fmt: skip
    started = time.perf_counter()
    reply = envs.BuildEnv(
        envs_pb2.BuildEnvRequest(
            backend=backend, targets=hub_pb2.Targets(nodes=[node]), no_cache=no_cache
        ),
        timeout=30,
    )
    finish(hub, reply, f"the {backend} build on {node}")
    return time.perf_counter() - started


def origin(envs: envs_pb2_grpc.EnvsStub, node: str, backend: str) -> str:
    listed_envs = envs.ListEnvs(envs_pb2.ListEnvsRequest(nodes=[node], backend=backend), timeout=30)
    return ", ".join(f"{e.env.name} {e.env.origin}" for e in listed_envs.envs)


def switch(hub: hub_pb2_grpc.HubStub, models: models_pb2_grpc.ModelsStub,
           environment: str) -> tuple[float, bool]:  # fmt: skip
    backend, _, version = environment.partition("-")
    started = time.perf_counter()
    reply = models.SwitchBackend(models_pb2.SwitchBackendRequest(
        name="tiny", backend=backend, version=version,
        targets=hub_pb2.Targets(nodes=["b"])), timeout=30)  # fmt: skip
    if reply.operation_id:
        finish(hub, hub_pb2.OperationRef(id=reply.operation_id), f"switch to {environment}")
    return time.perf_counter() - started, reply.instant_switch


def load_by_hand(work: Path, python: Path, port: int) -> float:
    """Seconds from starting the model's server to /v1/models listing it."""
    argv = [str(python), "-m", "llama_cpp.server", f"--model={work / 'tiny.gguf'}",
            "--model_alias=tiny", f"--port={port}", "--n_ctx=256"]  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1/models"
    started = time.perf_counter()
    with (work / "by-hand.log").open("ab") as log:
        server = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                  env={**os.environ, "GGML_VK_VISIBLE_DEVICES": "0"})  # fmt: skip
    try:
        wait(lambda: listed(url, "tiny"), 120, server)
        return time.perf_counter() - started
    finally:
        stop(server)


def measure(work: Path, backends: list[str], wheels: Path | None, switches: int) -> None:
    from tests.support.tiny_gguf import write_tiny_gguf

    models_dir = work / "models"
    models_dir.mkdir()
    (models_dir / "tiny.yaml").write_text(MODEL.format(path=write_tiny_gguf(work / "tiny.gguf")))
    (work / "hub" / "wheels").mkdir(parents=True)
    seeded = seed(wheels, backends, work / "hub" / "wheels")
    hub_process, address = start_hub(work / "hub", "--models", str(models_dir))
    env = {**os.environ, **podman.env(), "GGML_VK_VISIBLE_DEVICES": "0"}
    inventory = str(INVENTORIES / "a5500-a400.yaml")
    agents = [
        start_agent(address, node, work / node, "--inventory", inventory, env=env)
        for node in ("a", "b")
    ]
    try:
        hub = hub_stub(address)
        channel = grpc.insecure_channel(address)
        envs = envs_pb2_grpc.EnvsStub(channel)
        models = models_pb2_grpc.ModelsStub(channel)
        wait(lambda: ready_count(hub) == 2, 60, hub_process, *agents)
        for backend in backends:
            cold = build(hub, envs, "a", backend, no_cache=backend not in seeded)
            how = "installed from --wheels" if backend in seeded else "compiled"
            print(f"{backend:<7} node a ({how:<22}) {cold:8.1f} s   [{origin(envs, 'a', backend)}]")
            warm = build(hub, envs, "b", backend, no_cache=False)
            print(f"{backend:<7} node b (from the cluster cache) {warm:8.1f} s   "
                  f"[{origin(envs, 'b', backend)}]  (goal < 60 s)")  # fmt: skip
        pair = backends[:2] if len(backends) > 1 else [backends[0], f"{backends[0]}-{VERSION}"]
        port = free_port()
        reply = models.SwitchModel(
            models_pb2.SwitchModelRequest(
                name="tiny", targets=hub_pb2.Targets(nodes=["b"]), port=port
            ),
            timeout=30,
        )
        finish(hub, reply, "the model's first start")
        times: list[float] = []
        for i in range(switches * 2):
            took, instant = switch(hub, models, pair[(i + 1) % 2] if i else pair[1])
            if not instant:
                raise SystemExit(f"switch {i + 1} was not instant: an environment is missing")
            times.append(took)
        kill_leftovers(work)
        loads = [load_by_hand(work, work / "b" / "envs" / f"{b.partition('-')[0]}-{VERSION}"
                              / "bin" / "python", free_port()) for b in pair]  # fmt: skip
    finally:
        stop(*agents, hub_process)
        kill_leftovers(work)
    median, load = statistics.median(times), statistics.median(loads)
    print(f"switch-backend {pair[0]} <-> {pair[1]}: {len(times)} instant switches, median "
          f"{median:.2f} s to the model answering again (min {min(times):.2f}, max "
          f"{max(times):.2f})")  # fmt: skip
    print(f"model load by hand (start + poll /v1/models) median {load:.2f} s")
    print(f"switch excluding the model's load  {max(median - load, 0.0):.2f} s  (goal < 2 s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="cpu,vulkan",
                        help="comma-separated: cuda, vulkan, rocm, cpu")  # fmt: skip
    parser.add_argument("--wheels", type=Path, help="a wheel cache directory to seed the hub's")
    parser.add_argument("--switches", type=int, default=5, help="round trips between backends")
    args = parser.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    unknown = [b for b in backends if b not in ("cuda", "vulkan", "rocm", "cpu")]
    if unknown or not backends:
        raise SystemExit(f"--backends: {', '.join(unknown) or 'none'}: give some of cuda, "
                         "vulkan, rocm, cpu")  # fmt: skip
    try:
        import gguf  # noqa: F401
    except ImportError:
        raise SystemExit("gguf is missing: pip install -e '.[llama]'") from None
    with tempfile.TemporaryDirectory(prefix="gpufleet-bench-envs-") as tmp:
        measure(Path(tmp), backends, args.wheels, max(args.switches, 1))


if __name__ == "__main__":
    main()
