"""The Envs service (issue 15) over gRPC on a real hub (mutual TLS), with a real agent process
whose state dir holds the session's real CPU environment (tests/conftest.py `cpu_env`, a
hard-linked copy: nothing is compiled here): listing with filters, build logs, a build of a
ready environment and a preflight-only check as operations, the refusals of bad requests, a
removal refused while a llama.cpp model runs from the environment and done once it stopped,
a node that is down, and the wheel cache: an agent's upload listed with the node whose
environment came from it, removed by a key prefix. Plus the pure parts (hub/envs/listing.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format

from agent.envs.protos import wheel_from_proto
from agent.envs.wheels import GrpcWheels
from gpufleet.tls import TLS_OPTIONS
from gpufleet.v1 import agent_link_pb2 as pb
from gpufleet.v1 import agent_link_pb2_grpc, envs_pb2, envs_pb2_grpc, hub_pb2, hub_pb2_grpc
from hub.envs import listing
from hub.envs.view import EnvView
from tests.conftest import need
from tests.support import podman
from tests.support.envs import BuiltEnv
from tests.support.procs import Cluster, Daemon, free_port, wait_until

pytestmark = pytest.mark.timeout(3600)  # the session's CPU environment may be compiled first

MODEL = """\
name: tiny
engine: llama-cpp
source: {{path: {path}}}
llama_cpp: {{backend: cpu, n_ctx: 256}}
"""
NOW = datetime(2026, 11, 30, tzinfo=UTC)


# -- the pure parts ---------------------------------------------------------------------------


def env(name: str, state: str = "ready", key: str = "") -> EnvView:
    backend, _, version = name.partition("-")
    return EnvView(name, backend, version, state, key=key)


def test_in_use_chosen_and_log_env() -> None:
    views = (env("vulkan-0.3.9", "failed"), env("vulkan-0.3.36", "failed"), env("cpu-0.3.36"))
    assert listing.chosen(views, "vulkan") == ["vulkan-0.3.9", "vulkan-0.3.36"]
    assert listing.chosen(views, "rocm") == []
    assert listing.chosen(views, "rocm-0.3.36") == ["rocm-0.3.36"]  # the agent tells
    used = {("a", "vulkan-0.3.36"): ["tiny"], ("c", "cpu-0.3.36"): ["x"]}
    lines = listing.in_use({"a": ["vulkan-0.3.36"], "b": ["cpu-0.3.36"]}, used)
    assert lines == ["vulkan-0.3.36 on a is in use by model tiny: stop it first "
                     "(hubctl models stop tiny --node a)"]  # fmt: skip
    assert listing.log_env(views, "vulkan") == "vulkan-0.3.36"  # no ready one: the newest
    assert listing.log_env((*views, env("vulkan-0.3.8")), "vulkan") == "vulkan-0.3.8"  # ready
    assert listing.log_env(views, "cuda") is None
    assert listing.log_env(views, "cuda-0.3.1") == "cuda-0.3.1"
    nodes = listing.wheel_nodes([("a", (env("cpu-1", key="k1"),)), ("b", (env("cpu-1", key="k1"),
                                 env("cpu-2", key="k2"))), ("gone", (env("cpu-1", key="k1"),))],
                                ["a", "b"])  # fmt: skip
    assert nodes == {"k1": ["a", "b"], "k2": ["b"]}


@pytest.mark.parametrize("check, value", [
    (listing.check_backend, "metal"), (listing.check_version, "x.1"),
    (listing.check_version, "1" * 42), (listing.check_name, "vulkan-"),
    (listing.check_name, "metal-0.3.36"), (listing.check_name, "../x"),
    (listing.check_targets, ["86", "sm_86;x"]), (listing.check_targets, ["8" * 17]),
    (listing.check_targets, [str(n) for n in range(33)]),
])  # fmt: skip
def test_bad_requests_are_refused_by_the_agents_rules(check: Callable[[Any], Any],
                                                       value: Any) -> None:  # fmt: skip
    with pytest.raises(listing.Refusal):
        check(value)


def test_good_requests_pass() -> None:
    assert listing.check_version("0.3.36") == "0.3.36"
    assert listing.check_targets(["86", "90a", "gfx1100", "89-real"]) == (
        "86", "90a", "gfx1100", "89-real")  # fmt: skip
    assert listing.check_name("cuda") == "cuda" and listing.check_name("cpu-0.3.36") == "cpu-0.3.36"


# -- over gRPC, an operation holding the node ------------------------------------------------


def test_removal_is_refused_while_an_operation_holds_the_node(tmp_path: Path) -> None:
    """A build holds node a (its agent, a bare stream here, never answers the task):
    removing an environment there is refused with the operation's id, and the agent is asked
    nothing. `--all` on a hub that knows no node: "no nodes match"."""
    from gpufleet.channel import PROTOCOL_VERSION
    from hub.server import HubConfig, HubServer

    async def scenario() -> None:
        server = HubServer(HubConfig("127.0.0.1:0", tmp_path / "hub", heartbeat_interval=0.5,
                                     insecure=True))  # fmt: skip
        await server.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
        received: list[pb.HubMessage] = []
        stub = envs_pb2_grpc.EnvsStub(channel)  # type: ignore[no-untyped-call]
        agent: list[asyncio.Task[None]] = []
        try:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.RemoveEnv(envs_pb2.RemoveEnvRequest(
                    name="cpu", targets=hub_pb2.Targets(all=True)), timeout=10)  # fmt: skip
            assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert (caught.value.details() or "").startswith("no nodes match:")

            call = agent_link_pb2_grpc.AgentLinkStub(channel).Connect()
            hello = pb.Hello(node_name="a", agent_id="id-a",
                             versions=pb.Versions(protocol=PROTOCOL_VERSION),
                             envs=[pb.EnvInfo(name="cpu-0.3.36", backend="cpu", version="0.3.36",
                                              state="ready")])  # fmt: skip
            await call.write(pb.AgentMessage(hello=hello))
            assert (await asyncio.wait_for(call.read(), 10)).HasField("welcome")

            async def heartbeats() -> None:
                for seq in range(1, 1000):
                    await call.write(pb.AgentMessage(heartbeat=pb.Heartbeat(seq=seq)))
                    await asyncio.sleep(0.4)

            async def tasks() -> None:  # received, never answered
                while isinstance(message := await call.read(), pb.HubMessage):
                    received.append(message)

            agent = [asyncio.create_task(heartbeats()), asyncio.create_task(tasks())]
            build = envs_pb2.BuildEnvRequest(backend="cpu", version="0.3.99",
                                             targets=hub_pb2.Targets(nodes=["a"]))  # fmt: skip
            ref = await stub.BuildEnv(build, timeout=10)
            for _ in range(50):
                if received:
                    break
                await asyncio.sleep(0.1)
            asked = len(received)
            assert asked and server.manager.busy.get("a") == ref.id
            for targets in (hub_pb2.Targets(nodes=["a"]), hub_pb2.Targets(all=True)):
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await stub.RemoveEnv(envs_pb2.RemoveEnvRequest(name="cpu", targets=targets),
                                         timeout=10)  # fmt: skip
                assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
                assert caught.value.details() == (
                    f"node a is in operation {ref.id} (env-build): wait for it (hubctl ops watch "
                    f"{ref.id}) and try again")  # fmt: skip
            await asyncio.sleep(1.0)
            assert len(received) == asked  # no removal was sent to the agent
            assert [e.name for e in server.envs.of("a")] == ["cpu-0.3.36"]
        finally:
            for task in agent:
                task.cancel()
            await channel.close(None)
            await server.stop(grace=1)

    asyncio.run(scenario())


# -- over gRPC, with a real agent -------------------------------------------------------------


@dataclass
class Envs:
    cluster: Cluster
    node: str
    state: Path  # the agent's state dir
    built: BuiltEnv
    port: int  # the model server's
    channel: grpc.Channel  # as the hub's admin
    agent: Daemon | None = None

    def stub(self) -> envs_pb2_grpc.EnvsStub:
        return envs_pb2_grpc.EnvsStub(self.channel)  # type: ignore[no-untyped-call]

    @property
    def env_dir(self) -> Path:
        return self.state / "envs" / self.built.record.name

    def start_agent(self) -> Daemon:
        if self.agent is None:
            extra = ["--gpu-probe", "none"]
            self.agent = self.cluster.agent(self.node, labels="role=chat", extra=extra,
                                            env=podman.env())  # fmt: skip
        self.agent.start()
        self.cluster.wait_status({self.node: "ready"})
        return self.agent

    def listed(self, **request: Any) -> list[envs_pb2.NodeEnv]:
        reply = self.stub().ListEnvs(envs_pb2.ListEnvsRequest(**request), timeout=30)
        return list(reply.envs)

    def hubctl(self, *args: str) -> dict[str, Any]:
        done = self.cluster.hubctl(*args, "--json", check=False)
        assert "Traceback" not in done.stderr, done.stderr
        found: dict[str, Any] = json.loads(done.stdout)
        return found


def refused(call: Callable[..., Any], request: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=30)
    error: Any = caught.value
    return error.code(), error.details()


def copy_env(source: Path, target: Path) -> None:
    """The kept environment, hard-linked (fast, nothing rewritten in place by anyone)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["cp", "-al", str(source), str(target)], capture_output=True).returncode:
        shutil.copytree(source, target, symlinks=True)


def servers(port: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[1:3] == [b"-m", b"llama_cpp.server"] and f"--port={port}".encode() in argv:
            found.append(int(entry.name))
    return found


@pytest.fixture
def envs(tmp_path: Path, cpu_env: BuiltEnv) -> Iterator[Envs]:
    try:
        from tests.support.tiny_gguf import write_tiny_gguf
    except ImportError as exc:
        need(f"the llama extra is missing ({exc.name}): pip install -e '.[llama]'")
        raise
    if cpu_env.record.state != "ready":
        pytest.fail(f"the session's CPU environment is not ready: {cpu_env.record.message}")
    models = tmp_path / "models"
    models.mkdir()
    (tmp_path / "configs").mkdir()
    (models / "tiny.yaml").write_text(MODEL.format(path=write_tiny_gguf(tmp_path / "tiny.gguf")))
    # Heartbeats every 0.5 s: deleting a venv (about 4800 files, 1.5 s here) must not hold up
    # the agent's event loop (1.5 s without a heartbeat closes its stream).
    cluster = Cluster(tmp_path, None, heartbeat=0.5, configs=tmp_path / "configs",
                      hub_args=("--models", str(models)))  # fmt: skip
    node = f"e{os.getpid() % 10000}"
    state = tmp_path / "agents" / node
    copy_env(cpu_env.directory, state / "envs" / cpu_env.record.name)
    cluster.start_hub()
    port = free_port()
    with cluster.hub.channel() as channel:
        try:
            yield Envs(cluster, node, state, cpu_env, port, channel)
        finally:
            cluster.close()
            for pid in servers(port):  # a model server outlives its agent by design
                os.kill(pid, signal.SIGKILL)


def test_list_logs_build_refusals_and_removal_with_a_real_agent(envs: Envs) -> None:
    envs.start_agent()
    stub, node, name = envs.stub(), envs.node, envs.built.record.name
    wait_until(lambda: envs.listed(), 10, "the agent's environments listed")
    [found] = envs.listed()
    assert (found.node, found.env.name, found.env.state, found.connected) == (
        node, name, "ready", True)  # fmt: skip
    assert found.env.key == envs.built.record.key and found.env.origin in ("compiled", "cache")
    assert "CPU :" in found.env.system_info and list(found.models) == []
    assert [e.node for e in envs.listed(nodes=[node], backend="cpu", selector=["role=chat"])] == [
        node]  # fmt: skip
    assert envs.listed(backend="vulkan") == [] and envs.listed(selector=["role=coder"]) == []
    assert refused(stub.ListEnvs, envs_pb2.ListEnvsRequest(backend="metal"))[0] == (
        grpc.StatusCode.INVALID_ARGUMENT)  # fmt: skip
    code, text = refused(stub.ListEnvs, envs_pb2.ListEnvsRequest(nodes=["nope"]))
    assert code == grpc.StatusCode.NOT_FOUND and text.startswith("unknown node nope")

    # The build log, by backend or by name.
    log = stub.EnvLogs(envs_pb2.EnvLogsRequest(name="cpu", node=node, lines=3), timeout=30)
    assert (log.node, log.name) == (node, name) and len(log.log.split("\n")) == 3
    whole = stub.EnvLogs(envs_pb2.EnvLogsRequest(name=name, node=node), timeout=30).log
    assert whole.split("\n")[-3:] == log.log.split("\n") and len(whole.split("\n")) == 100
    for request, expected in [
        (envs_pb2.EnvLogsRequest(name="cpu"), grpc.StatusCode.INVALID_ARGUMENT),
        (envs_pb2.EnvLogsRequest(name="cpu", node=node, lines=10_001),
         grpc.StatusCode.INVALID_ARGUMENT),
        (envs_pb2.EnvLogsRequest(name="cpu", node="nope"), grpc.StatusCode.NOT_FOUND),
        (envs_pb2.EnvLogsRequest(name="vulkan", node=node), grpc.StatusCode.NOT_FOUND),
        (envs_pb2.EnvLogsRequest(name="cpu-9.9.9", node=node),
         grpc.StatusCode.FAILED_PRECONDITION),  # the agent: no build log of it
    ]:  # fmt: skip
        assert refused(stub.EnvLogs, request)[0] == expected, request

    # Builds: bad requests refused before any node sees them; a ready one is not built again;
    # a check runs the preflight only.
    targets = hub_pb2.Targets(nodes=[node])
    for build, expected in [
        (envs_pb2.BuildEnvRequest(backend="metal", targets=targets),
         grpc.StatusCode.INVALID_ARGUMENT),
        (envs_pb2.BuildEnvRequest(backend="cpu", version="latest", targets=targets),
         grpc.StatusCode.INVALID_ARGUMENT),
        (envs_pb2.BuildEnvRequest(backend="cuda", extra_targets=["86;rm -rf"], targets=targets),
         grpc.StatusCode.INVALID_ARGUMENT),
        (envs_pb2.BuildEnvRequest(backend="cpu", targets=hub_pb2.Targets(nodes=["nope"])),
         grpc.StatusCode.NOT_FOUND),
        (envs_pb2.BuildEnvRequest(backend="cpu"), grpc.StatusCode.INVALID_ARGUMENT),  # no nodes
    ]:  # fmt: skip
        assert refused(stub.BuildEnv, build)[0] == expected, build
    version = envs.built.record.version
    ready = operation(envs, stub.BuildEnv(envs_pb2.BuildEnvRequest(
        backend="cpu", version=version, targets=targets), timeout=30).id)  # fmt: skip
    assert (ready.kind, ready.status, ready.configuration) == ("env-build", "succeeded", name)
    assert ready.nodes[0].message == f"{name} is ready already, nothing done"
    checked = operation(envs, stub.BuildEnv(envs_pb2.BuildEnvRequest(
        backend="cpu", version="0.3.35", targets=targets, check=True), timeout=30).id)  # fmt: skip
    assert checked.status == "succeeded" and checked.check, checked
    assert checked.nodes[0].message.startswith("would build cpu-0.3.35 (llama-cpp-python 0.3.35")
    assert not (envs.state / "envs" / "cpu-0.3.35").exists()

    # A model runs from it: removal refused on every node, nothing removed.
    switched = envs.hubctl("models", "switch", "tiny", "--node", node, "--port", str(envs.port))
    assert switched["status"] == "succeeded", switched
    wait_until(lambda: list(envs.listed()[0].models) == ["tiny"], 10, "the model using it")
    line = (f"{name} on {node} is in use by model tiny: stop it first (hubctl models stop tiny "
            f"--node {node})")  # fmt: skip
    for asked in (name, "cpu"):
        assert refused(stub.RemoveEnv, envs_pb2.RemoveEnvRequest(name=asked, targets=targets)) == (
            grpc.StatusCode.FAILED_PRECONDITION, line)  # fmt: skip
    assert (envs.env_dir / "bin" / "python").exists() and servers(envs.port)
    assert refused(stub.RemoveEnv, envs_pb2.RemoveEnvRequest(name=name))[0] == (
        grpc.StatusCode.INVALID_ARGUMENT
    )  # no nodes named
    assert refused(stub.RemoveEnv, envs_pb2.RemoveEnvRequest(name="metal", targets=targets))[0] == (
        grpc.StatusCode.INVALID_ARGUMENT)  # fmt: skip
    stopped = envs.hubctl("models", "stop", "tiny")
    assert stopped["status"] == "succeeded", stopped
    wait_until(lambda: not servers(envs.port), 10, "the model server gone")
    # The agent says so with its next heartbeat (what runs from each environment changed).
    wait_until(lambda: list(envs.listed()[0].models) == [], 10, "no model using it any more")

    # A node that is down: listed as it said last, nothing done on it.
    assert envs.agent is not None and envs.agent.terminate() == 0
    envs.cluster.wait_status({node: "down"})
    [down] = envs.listed()
    assert down.env.name == name and not down.connected
    code, text = refused(stub.RemoveEnv, envs_pb2.RemoveEnvRequest(name=name, targets=targets))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and f"node {node} is not connected" in text
    assert refused(stub.EnvLogs, envs_pb2.EnvLogsRequest(name="cpu", node=node))[0] == (
        grpc.StatusCode.FAILED_PRECONDITION)  # fmt: skip
    envs.start_agent()

    # The wheel cache: an agent uploads (its certificate names the builder); listed with the
    # node whose environment came from that wheel; removed by a key prefix.
    wheel = upload_kept_wheel(envs)
    cache = stub.ListWheels(envs_pb2.ListWheelsRequest(), timeout=30)
    [cached] = cache.wheels
    assert cached.meta.key == envs.built.record.key == wheel.key
    assert (cached.meta.built_on, list(cached.nodes)) == (node, [node])
    assert cache.total_bytes == wheel.size == cached.meta.size
    for key, expected in [("0" * 64, grpc.StatusCode.NOT_FOUND),
                          (wheel.key[:7], grpc.StatusCode.INVALID_ARGUMENT),
                          ("x" * 12, grpc.StatusCode.INVALID_ARGUMENT)]:  # fmt: skip
        code, text = refused(stub.RemoveWheel, envs_pb2.RemoveWheelRequest(key=key))
        assert code == expected and "\n" not in text, (key, text)
    removed = stub.RemoveWheel(envs_pb2.RemoveWheelRequest(key=wheel.key[:8]), timeout=30)
    assert removed.removed.key == wheel.key
    assert list(stub.ListWheels(envs_pb2.ListWheelsRequest(), timeout=30).wheels) == []
    # The admin is no agent: the cache's own service is refused to it.
    download = agent_link_pb2_grpc.WheelCacheStub(envs.channel).Download
    with pytest.raises(grpc.RpcError) as caught:
        list(download(pb.WheelQuery(key=wheel.key), timeout=30))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]

    # Removed once nothing runs from it; again: nothing there, ok.
    reply = stub.RemoveEnv(envs_pb2.RemoveEnvRequest(name=name, targets=targets), timeout=60)
    assert [(r.node, r.name, r.ok, r.message) for r in reply.removed] == [
        (node, name, True, f"removed {name}")]  # fmt: skip
    assert not envs.env_dir.exists() and envs.listed() == []
    again = stub.RemoveEnv(envs_pb2.RemoveEnvRequest(name="cpu", targets=targets), timeout=60)
    assert [(r.ok, r.message) for r in again.removed] == [(True, "no cpu environment on this node")]


def operation(envs: Envs, operation_id: str) -> hub_pb2.Operation:
    stub = hub_pb2_grpc.HubStub(envs.channel)

    def done() -> hub_pb2.Operation | None:
        found = stub.GetOperation(hub_pb2.GetOperationRequest(id=operation_id), timeout=30)
        # Every node's message too: the status may be read before the nodes' rows are written.
        ended = found.status != "running" and all(n.message for n in found.nodes)
        return found if ended else None

    return wait_until(done, 120, f"operation {operation_id} to end", every=0.2)


def upload_kept_wheel(envs: Envs) -> pb.WheelMeta:
    """The session's CPU wheel, uploaded as the agent (its certificate) would."""
    directory = envs.built.root / "wheels" / envs.built.record.key
    meta = json_format.Parse((directory / "meta.json").read_text(), pb.WheelMeta())
    meta.built_on = "someone-else"  # the hub believes the certificate, not this
    tls = envs.state / "tls"
    credentials = grpc.ssl_channel_credentials(
        *((tls / n).read_bytes() for n in ("ca.crt", "agent.key", "agent.crt")))  # fmt: skip

    def channel() -> grpc.aio.Channel:
        return grpc.aio.secure_channel(envs.cluster.address, credentials, options=TLS_OPTIONS)

    began = time.monotonic()
    asyncio.run(GrpcWheels(channel).upload(directory / meta.filename, wheel_from_proto(meta)))
    assert time.monotonic() - began < 30
    return meta
