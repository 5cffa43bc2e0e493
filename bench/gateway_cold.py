"""Scale from zero through the gateway: `python -m bench.gateway --cold-start [--cold-runs N]`.

A real hub (mutual TLS, its `--models` directory holding `tiny`, a tiny random-weight GGUF
model for llama.cpp on the cpu backend whose `gateway:` section names the node and port), a
real agent and a real gpufleet-gateway, both enrolled with join tokens (roles agent and
gateway), the gateway in its open mode on loopback. Each run: `tiny` is stopped; one streaming
chat completion is sent to the gateway, which asks the hub to start the model and holds the
request; the time to its first SSE event is split at the moment the model's server lists the
model on /v1/models (polled by the benchmark every 20 ms): "start" before, "first token"
after (the agent's health check noticing, the hub's routing table reaching the gateway, and
the first token). A warm request's first token follows, for comparison. The agent runs the
server from --llama-env cpu=this interpreter's environment (llama-cpp-python installed).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import grpc

from bench import common
from bench.common import free_port, ready_count, spawn, start_agent, start_hub, stop, wait
from bench.gateway import answers
from bench.model_switch import finish, kill_leftovers, listed
from gpufleet.v1 import (
    hub_pb2,
    hub_pb2_grpc,
    models_pb2,
    models_pb2_grpc,
    trust_pb2,
    trust_pb2_grpc,
)
from tests.support import podman

NODE, GATEWAY = "bench", "bench-gw"
MODEL = """\
name: tiny
engine: llama-cpp
source: {{path: {path}}}
llama_cpp: {{n_ctx: 256, backend: cpu}}
gateway: {{node: {node}, port: {port}}}
"""
POLL_S = 0.02


def token(chan: grpc.Channel, role: int, name: str = "") -> str:
    request = trust_pb2.CreateTokenRequest(role=role, ttl_seconds=300, name=name)  # type: ignore[arg-type]
    found: str = trust_pb2_grpc.TrustStub(chan).CreateToken(request, timeout=30).token
    return found


def state(url: str) -> str:
    """The gateway's state of `tiny` (ready, loading, stopped, failed), '' if not listed."""
    try:
        with urllib.request.urlopen(f"{url}/v1/models", timeout=5) as reply:
            found = json.loads(reply.read())
    except (OSError, ValueError):
        return ""
    return next((str(m.get("state")) for m in found.get("data") or [] if m["id"] == "tiny"), "")


def first_event(url: str) -> tuple[float, float]:
    """A streaming chat completion through the gateway: (seconds to its first data event,
    seconds to its end)."""
    body = {"model": "tiny", "stream": True, "max_tokens": 8,
            "messages": [{"role": "user", "content": "Once upon a time"}]}  # fmt: skip
    request = urllib.request.Request(f"{url}/v1/chat/completions", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})  # fmt: skip
    started = time.perf_counter()
    first = 0.0
    with urllib.request.urlopen(request, timeout=600) as reply:
        for line in reply:
            if line.startswith(b"data:") and not first:
                first = time.perf_counter() - started
            if b"[DONE]" in line or line.startswith(b"event: error"):
                break
    if not first:
        raise SystemExit("the gateway's stream ended without a data event")
    return first, time.perf_counter() - started


def cold(url: str, port: int) -> tuple[float, float]:
    """One scale from zero: (start, first token) in seconds."""
    ready: list[float] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set() and not listed(f"http://127.0.0.1:{port}/v1/models", "tiny"):
            time.sleep(POLL_S)
        ready.append(time.perf_counter())

    watcher = threading.Thread(target=watch, daemon=True)
    started = time.perf_counter()
    watcher.start()
    try:
        first, _ = first_event(url)
    finally:
        done.set()
        watcher.join()
    start = min(ready[0] - started, first)
    return start, first - start


def stopped(hub: hub_pb2_grpc.HubStub, models: models_pb2_grpc.ModelsStub, url: str) -> None:
    """Stop the model once the start that the gateway asked for has finished: the gateway may
    answer from the server before the hub's switch operation (which waits for the agent's
    health check) lets go of the node."""
    request = models_pb2.StopModelRequest(name="tiny", targets=hub_pb2.Targets(nodes=[NODE]))
    deadline = time.monotonic() + 60
    while True:
        try:
            reply = models.StopModel(request, timeout=30)
            break
        except grpc.RpcError as exc:
            held = exc.code() == grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]
            if not held or time.monotonic() > deadline:
                raise
            time.sleep(POLL_S)
    finish(hub, reply, "stop tiny")
    wait(lambda: state(url) == "stopped", 30)


def measure(work: Path, runs: int) -> tuple[list[float], list[float], list[float]]:
    from tests.support.tiny_gguf import write_tiny_gguf

    (work / "models").mkdir()
    port, listen = free_port(), f"127.0.0.1:{free_port()}"
    path = write_tiny_gguf(work / "tiny.gguf")
    (work / "models" / "tiny.yaml").write_text(MODEL.format(path=path, node=NODE, port=port))
    hub_process, address = start_hub(work / "hub", "--models", str(work / "models"),
                                     "--heartbeat-interval", "0.5", secure=True)  # fmt: skip
    agent = gateway = None
    starts: list[float] = []
    firsts: list[float] = []
    warms: list[float] = []
    try:
        chan = common.channel(address, common.admin_credentials(work / "hub"))
        hub, models = hub_pb2_grpc.HubStub(chan), models_pb2_grpc.ModelsStub(chan)
        agent = start_agent(address, NODE, work / "agent", "--gpu-probe", "none", "--gpu-runtime",
                            "none", "--llama-env", f"cpu={sys.prefix}",
                            token=token(chan, trust_pb2.ROLE_AGENT),
                            env={**os.environ, **podman.env()})  # fmt: skip
        enroll = str(int(address.rpartition(":")[2]) + 1)  # start_hub's enrollment port
        joins = {**os.environ, "GPUFLEET_JOIN_TOKEN": token(chan, trust_pb2.ROLE_GATEWAY, GATEWAY)}
        gateway = spawn(["-m", "gateway", "--hub", address, "--name", GATEWAY, "--state-dir",
                         str(work / "gateway"), "--listen", listen, "--open", "--enroll-port",
                         enroll, "--log-level", "warning"],
                        work / "gateway.log", env=joins)  # fmt: skip
        url = f"http://{listen}"
        wait(lambda: ready_count(hub) == 1, 60, agent, hub_process)
        wait(lambda: answers(f"{url}/readyz") and state(url) == "stopped", 60, gateway)
        for _ in range(runs):
            start, first = cold(url, port)
            starts.append(start)
            firsts.append(first)
            warms.append(first_event(url)[0])
            stopped(hub, models, url)
    finally:
        stop(gateway, agent, hub_process)
        kill_leftovers(work)
    return starts, firsts, warms


def cold_start(runs: int) -> None:
    try:
        import gguf  # noqa: F401
        import llama_cpp.server  # noqa: F401
    except ImportError as exc:
        raise SystemExit(f"{exc.name} is missing: pip install -e '.[llama]'") from None
    with tempfile.TemporaryDirectory(prefix="gpufleet-bench-cold-") as tmp:
        starts, firsts, warms = measure(Path(tmp), runs)
    totals = [s + f for s, f in zip(starts, firsts, strict=True)]
    plural = "" if runs == 1 else "s"
    print(f"cold start     {runs} run{plural}: a streaming request for tiny (stopped; llama.cpp "
          "on the cpu) through hub + agent + gateway")  # fmt: skip
    print(f"cold start     request to first token  median {statistics.median(totals):.2f} s  "
          f"(min {min(totals):.2f}, max {max(totals):.2f})")  # fmt: skip
    print(f"cold start     start (to model ready)  median {statistics.median(starts):.2f} s")
    print(f"cold start     ready to first token    median {statistics.median(firsts):.2f} s")
    print(f"warm request   first token             median {statistics.median(warms):.3f} s")
