"""The OpenAI-compatible gateway end to end (issue 16): a real hub, three real agents, real
llama.cpp servers (tiny random-weight GGUF models on the cpu backend, from this interpreter's
environment), the real `gpufleet-gateway` process enrolled with a gateway token, and the
official `openai` client.

Nodes a and b run `tiny` (two replicas); node c is free for scale from zero: `lazy` runs
nowhere until a request asks for it, and is stopped again after its idle_ttl.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from gpufleet.v1 import trust_pb2
from tests.conftest import need
from tests.e2e.test_model_switch import servers
from tests.support import podman
from tests.support.procs import Cluster, Daemon, free_port, wait_until

TINY = """\
name: tiny
aliases: [tiny-chat]
engine: llama-cpp
source: {{path: {path}}}
llama_cpp: {{backend: cpu, n_ctx: 256, extra_args: [--embedding, "true"]}}
"""
LAZY = """\
name: lazy
engine: llama-cpp
source: {{path: {path}}}
llama_cpp: {{backend: cpu, n_ctx: 256}}
gateway: {{node: {node}, port: {port}, idle_ttl: {ttl}}}
"""
IDLE_TTL_S = 6


@dataclass
class Gateway:
    cluster: Cluster
    daemon: Daemon
    url: str
    key: str
    ports: dict[str, int]
    nodes: dict[str, str]

    def start(self) -> None:
        self.daemon.start()
        wait_until(lambda: self.get("/readyz", auth=False)[0] == 200, 30, "gateway ready")

    def get(self, path: str, auth: bool = True) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.key}"} if auth else {}
        request = urllib.request.Request(self.url + path, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                body = reply.read().decode()
                status = reply.status
        except urllib.error.HTTPError as exc:
            body, status = exc.read().decode(), exc.code
        except OSError:
            return 0, None
        try:
            return status, json.loads(body)
        except ValueError:
            return status, body

    def client(self, key: str | None = None) -> Any:
        import openai

        return openai.OpenAI(base_url=self.url + "/v1", api_key=key or self.key, max_retries=0,
                             timeout=120)  # fmt: skip

    def models(self) -> dict[str, dict[str, Any]]:
        status, body = self.get("/v1/models")
        assert status == 200, body
        return {entry["id"]: entry for entry in body["data"]}

    def running(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.cluster.json("models", "running")
        return found


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    try:
        import llama_cpp.server  # noqa: F401
        import openai  # noqa: F401

        from tests.support.tiny_gguf import write_tiny_gguf
    except ImportError as exc:
        need(f"{exc.name} is missing: pip install -e '.[dev]'")
        raise
    tmp = tmp_path_factory.mktemp("gateway")
    models = tmp / "models"
    models.mkdir()
    (tmp / "configs").mkdir()
    suffix = secrets.token_hex(2)
    nodes = {name: f"g{name}{suffix}" for name in ("a", "b", "c")}
    ports = {name: free_port() for name in ("a", "b", "lazy")}
    tiny = write_tiny_gguf(tmp / "tiny.gguf", seed=1, name="tiny")
    lazy = write_tiny_gguf(tmp / "lazy.gguf", seed=2, name="lazy")
    (models / "tiny.yaml").write_text(TINY.format(path=tiny))
    (models / "lazy.yaml").write_text(
        LAZY.format(path=lazy, node=nodes["c"], port=ports["lazy"], ttl=IDLE_TTL_S)
    )
    cluster = Cluster(tmp, None, heartbeat=0.5, configs=tmp / "configs",
                      hub_args=("--models", str(models)))  # fmt: skip
    try:
        cluster.start_hub()
        for name, node in nodes.items():
            # Node a says where its servers are reached; the others are reached by host name.
            address = ["--advertise-address", "127.0.0.1"] if name == "a" else []
            cluster.agent(node, extra=["--gpu-probe", "none", "--llama-env", f"cpu={sys.prefix}",
                                       *address], env=podman.env()).start()  # fmt: skip
        cluster.wait_status({node: "ready" for node in nodes.values()}, timeout=60)
        for name in ("a", "b"):
            cluster.hubctl("models", "switch", "tiny", "--node", nodes[name],
                           "--port", str(ports[name]))  # fmt: skip
        key = json.loads(cluster.hubctl("keys", "create", "--name", "app1", "--json").stdout)
        listen = f"127.0.0.1:{free_port()}"
        token = cluster.create_token(trust_pb2.ROLE_GATEWAY, name="gw1")
        argv = ["-m", "gateway", "--hub", cluster.address, "--name", "gw1",
                "--state-dir", str(tmp / "gateway"), "--listen", listen,
                "--enroll-port", cluster.enroll.rpartition(":")[2],
                "--default-model", "tiny"]  # fmt: skip
        daemon = Daemon("gateway", argv, tmp / "logs" / "gateway.log",
                        env={"GPUFLEET_JOIN_TOKEN": token})  # fmt: skip
        cluster.daemons.append(daemon)
        found = Gateway(cluster, daemon, f"http://{listen}", key["secret"], ports, nodes)
        found.start()
        wait_until(lambda: found.models().get("tiny", {}).get("state") == "ready", 60,
                   "tiny ready at the gateway")  # fmt: skip
        yield found
    finally:
        cluster.close()
        for port in ports.values():  # a server outlives its agent by design
            for pid in servers(port):
                os.kill(pid, signal.SIGKILL)


def healthy_replicas(gw: Gateway) -> list[dict[str, Any]]:
    status, body = gw.get("/services")
    assert status == 200, body
    return [s for s in body["services"] if s["model"] == "tiny" and s["healthy"]]


def test_the_openai_client_chats_completes_embeds_and_lists_through_the_gateway(
    gateway: Gateway,
) -> None:
    client = gateway.client()
    listed = {m.id: m for m in client.models.list().data}
    assert {"tiny", "lazy"} <= set(listed)
    tiny = listed["tiny"].model_dump()
    assert tiny["state"] == "ready" and sorted(tiny["nodes"]) == sorted(
        [gateway.nodes["a"], gateway.nodes["b"]])  # fmt: skip
    assert listed["lazy"].model_dump()["state"] == "stopped"

    reply = client.chat.completions.create(
        model="tiny", max_tokens=4, messages=[{"role": "user", "content": "hello"}])  # fmt: skip
    assert reply.choices[0].message.role == "assistant" and reply.usage is not None

    chunks = list(client.chat.completions.create(
        model="tiny-chat", max_tokens=6, stream=True,
        messages=[{"role": "user", "content": "hello"}]))  # fmt: skip
    assert len(chunks) >= 2 and chunks[-1].choices[0].finish_reason is not None

    completion = client.completions.create(model="tiny", prompt="once upon", max_tokens=4)
    assert completion.choices[0].text is not None and completion.usage is not None

    embedded = client.embeddings.create(model="tiny", input="hello there")
    assert len(embedded.data) == 1 and embedded.data[0].embedding

    # No model in the body: the gateway's --default-model.
    hello = {"max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}
    status, body = post(gateway, "/v1/chat/completions", hello)
    assert status == 200 and body["choices"], body

    services = {s["node"]: s["endpoint"] for s in healthy_replicas(gateway)}
    a, b = gateway.nodes["a"], gateway.nodes["b"]
    assert services == {a: f"http://127.0.0.1:{gateway.ports['a']}",
                        b: f"http://{socket.gethostname()}:{gateway.ports['b']}"}  # fmt: skip
    running = {r["node"]: r["endpoint"] for r in gateway.running()}
    assert running == services  # hubctl models running says the same
    status, metrics = gateway.get("/metrics")
    assert status == 200 and 'model="tiny"' in metrics


def post(gw: Gateway, path: str, body: Any, key: str | None = None) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(
        gw.url + path, data=data,
        headers={"Authorization": f"Bearer {key or gw.key}", "Content-Type": "application/json"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=120) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_unknown_models_bad_keys_and_bad_bodies_get_openai_shaped_errors(
    gateway: Gateway,
) -> None:
    import openai

    client = gateway.client()
    with pytest.raises(openai.NotFoundError) as unknown:
        client.chat.completions.create(model="tinny", max_tokens=2,
                                       messages=[{"role": "user", "content": "hi"}])  # fmt: skip
    assert "tiny" in str(unknown.value)  # close names are listed
    with pytest.raises(openai.AuthenticationError):
        gateway.client(key="gpf-not-a-key").models.list()
    status, body = post(gateway, "/v1/chat/completions", b"{not json")
    assert status == 400 and body["error"]["message"]


def test_a_replica_killed_before_a_request_is_retried_on_the_other(gateway: Gateway) -> None:
    first = healthy_replicas(gateway)[0]
    port = int(first["endpoint"].rsplit(":", 1)[1])
    for pid in servers(port):
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not servers(port), 10, "the killed server gone")
    reply = gateway.client().chat.completions.create(
        model="tiny", max_tokens=2, messages=[{"role": "user", "content": "hi"}])  # fmt: skip
    assert reply.choices[0].message.role == "assistant"
    # It went to the dead replica first (the first in the table, nothing in flight) and was
    # sent to the other one.
    status, metrics = gateway.get("/metrics")
    assert status == 200 and 'gpufleet_gateway_retries_total{model="tiny"} 1.0' in metrics
    # The agent sees the server gone; its route goes once the health check says so.
    wait_until(lambda: [s["node"] for s in healthy_replicas(gateway)] == [
        n for n in (gateway.nodes["a"], gateway.nodes["b"]) if n != first["node"]], 30,
        "the dead replica out of the routes")  # fmt: skip


def test_a_gateway_restart_loses_no_route(gateway: Gateway) -> None:
    assert gateway.daemon.terminate(timeout=15) == 0
    gateway.start()
    reply = gateway.client().chat.completions.create(
        model="tiny", max_tokens=2, messages=[{"role": "user", "content": "hi"}])  # fmt: skip
    assert reply.choices[0].message.role == "assistant"


def test_scale_from_zero_shares_one_start_and_idle_unload_stops_it(gateway: Gateway) -> None:
    assert not [r for r in gateway.running() if r["model"] == "lazy"]
    results: list[Any] = []

    def ask() -> None:
        try:
            hello = [{"role": "user", "content": "hi"}]
            client = gateway.client()
            results.append(client.chat.completions.create(model="lazy", max_tokens=2,
                                                          messages=hello))  # fmt: skip
        except Exception as exc:  # reported by the assertion below
            results.append(exc)

    started = time.monotonic()
    threads = [threading.Thread(target=ask) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert [getattr(r, "object", r) for r in results] == ["chat.completion"] * 2, results
    finished = time.monotonic()
    [run] = [r for r in gateway.running() if r["model"] == "lazy"]
    assert run["node"] == gateway.nodes["c"]
    assert run["endpoint"].endswith(f":{gateway.ports['lazy']}")
    starts = [op for op in gateway.cluster.json("ops")
              if op["kind"] == "model-switch" and op["configuration"] == "model-lazy"]  # fmt: skip
    assert len(starts) == 1, starts
    status, metrics = gateway.get("/metrics")
    assert status == 200
    assert 'gpufleet_gateway_cold_starts_total{model="lazy"} 1.0' in metrics

    # Idle: stopped no sooner than idle_ttl after the last request finished.
    wait_until(lambda: not [r for r in gateway.running() if r["model"] == "lazy"],
               IDLE_TTL_S + 60, "lazy stopped after its idle ttl")  # fmt: skip
    assert time.monotonic() - finished >= IDLE_TTL_S - 0.5
    assert finished - started < 300
    wait_until(lambda: gateway.models()["lazy"]["state"] == "stopped", 30, "lazy stopped")
