"""The Gateway service of a real hub, with two real agents serving tiny llama.cpp models
(random weights, cpu backend, this interpreter's llama-cpp-python): the routing table streamed
at once and on every change (a model started by hand, a key created and revoked, an agent
gone), scale from zero on the free node with two concurrent calls sharing one start, a node
that runs something else never taken, the idle unload from the gateways' activity, the
refusals in one line, and GpuStats."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from gpufleet.v1 import gateway_pb2, gateway_pb2_grpc, hub_pb2, models_pb2, models_pb2_grpc
from tests.conftest import need
from tests.e2e.test_model_switch import servers
from tests.support.procs import Cluster, free_port, wait_until

MODEL = """\
name: {name}
engine: llama-cpp
source: {{path: {path}}}
llama_cpp: {{backend: cpu, n_ctx: 256}}
aliases: [{name}-alias]
"""


class Follower:
    """WatchRoutes in a thread: every table the hub sends."""

    def __init__(self, channel: grpc.Channel) -> None:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        self.call = stub.WatchRoutes(gateway_pb2.WatchRoutesRequest(gateway="test-gw"))
        self.tables: list[gateway_pb2.RouteTable] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._follow, daemon=True)
        self.thread.start()

    def _follow(self) -> None:
        try:
            for table in self.call:
                with self.lock:
                    self.tables.append(table)
        except grpc.RpcError:
            pass

    @property
    def latest(self) -> gateway_pb2.RouteTable:
        with self.lock:
            assert self.tables, "no table yet"
            return self.tables[-1]

    def until(self, check: Callable[[gateway_pb2.RouteTable], bool], what: str,
              timeout: float = 60) -> gateway_pb2.RouteTable:  # fmt: skip
        """The first table from now on that passes `check`."""
        with self.lock:
            seen = len(self.tables) - 1  # the current table counts

        def found() -> gateway_pb2.RouteTable | None:
            with self.lock:
                return next((t for t in self.tables[max(seen, 0) :] if check(t)), None)

        return wait_until(found, timeout, what, every=0.05)


def state(table: gateway_pb2.RouteTable, name: str) -> str:
    return next(m.state for m in table.models if m.name == name)


def replicas(table: gateway_pb2.RouteTable, name: str) -> list[tuple[str, bool, str]]:
    return [(r.node, r.healthy, r.state) for r in table.replicas if r.model == name]


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[tuple[Cluster, dict[str, int]]]:
    try:
        import llama_cpp.server  # noqa: F401

        from tests.support.tiny_gguf import write_tiny_gguf
    except ImportError as exc:
        need(f"the llama extra is missing ({exc.name}): pip install -e '.[llama]'")
        raise
    models = tmp_path / "models"
    models.mkdir()
    ports = {"tiny-a": free_port(), "tiny-b": free_port(), "tiny-c": free_port()}
    gateway = {
        "tiny-a": f"gateway: {{idle_ttl: 3, port: {ports['tiny-a']}}}\n",
        "tiny-b": "",
        "tiny-c": f"gateway: {{node: n1, port: {ports['tiny-c']}}}\n",
    }
    for seed, name in enumerate(ports):
        path = write_tiny_gguf(tmp_path / f"{name}.gguf", seed=seed, name=name)
        (models / f"{name}.yaml").write_text(MODEL.format(name=name, path=path) + gateway[name])
    (models / "broken.yaml").write_text("name: broken\nengine: nope\n")
    # A model whose server cannot start: its file is not a GGUF.
    (tmp_path / "bad.gguf").write_text("not a model\n")
    ports["tiny-bad"] = free_port()
    bad = MODEL.format(name="tiny-bad", path=tmp_path / "bad.gguf")
    (models / "tiny-bad.yaml").write_text(bad + f"gateway: {{port: {ports['tiny-bad']}}}\n")
    (tmp_path / "configs").mkdir()
    # Plaintext: every caller may call everything (a gateway's credential is the gateway
    # suite's business; an admin may not pose as a gateway).
    cluster = Cluster(tmp_path, None, heartbeat=0.5, configs=tmp_path / "configs",
                      secure=False, hub_args=("--models", str(models)))  # fmt: skip
    try:
        cluster.start_hub()
        llama = ["--llama-env", f"cpu={sys.prefix}"]
        cluster.agent("n1", extra=["--gpu-probe", "none", *llama]).start()
        cluster.agent("n2", inventory="a5500-a400.yaml", extra=llama).start()
        cluster.wait_status({"n1": "ready", "n2": "ready"})
        yield cluster, ports
    finally:
        cluster.close()
        for port in ports.values():  # a server outlives its agent by design
            for pid in servers(port):
                os.kill(pid, signal.SIGKILL)


def test_routes_scale_from_zero_and_idle_unload(fleet: tuple[Cluster, dict[str, int]]) -> None:
    cluster, ports = fleet
    channel = cluster.hub.channel()
    stub = gateway_pb2_grpc.GatewayStub(channel)
    keys = gateway_pb2_grpc.ApiKeysStub(channel)
    follower = Follower(channel)
    try:
        first = follower.until(lambda t: len(t.models) == 4, "the first table")
        assert [(m.name, m.state) for m in first.models] == [
            ("tiny-a", "stopped"), ("tiny-b", "stopped"), ("tiny-bad", "stopped"),
            ("tiny-c", "stopped")]  # fmt: skip
        a = first.models[0]
        assert (list(a.aliases), a.served_model_name, a.engine) == (
            ["tiny-a-alias"], "tiny-a", "llama-cpp")  # fmt: skip
        assert (a.idle_ttl_s, a.load_timeout_s, first.models[1].idle_ttl_s) == (3, 300, 0)
        assert len(first.errors) == 1 and "broken.yaml" in first.errors[0]
        assert not first.replicas and not first.keys
        # Generations count from the hub's clock (ms): a restarted hub's exceed the last ones.
        assert first.generation > int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)

        # A key created is in the next table at once; revoked, it is gone.
        created = keys.CreateKey(gateway_pb2.CreateKeyRequest(name="app1", models=["tiny-a"]))
        with_key = follower.until(lambda t: [k.name for k in t.keys] == ["app1"], "the key", 5)
        assert with_key.generation > first.generation
        assert list(with_key.keys[0].models) == ["tiny-a"] and len(with_key.keys[0].sha256) == 64
        assert created.secret.startswith("gpf-")
        keys.RevokeKey(gateway_pb2.RevokeKeyRequest(name="app1"))
        follower.until(lambda t: not t.keys, "the key revoked", 5)

        # tiny-b started by hand on n1: ready, its replica healthy with its endpoint.
        cluster.hubctl("models", "switch", "tiny-b", "--node", "n1", "--port",
                       str(ports["tiny-b"]))  # fmt: skip
        ready = follower.until(lambda t: state(t, "tiny-b") == "ready", "tiny-b ready")
        [b] = [r for r in ready.replicas if r.model == "tiny-b"]
        assert (b.node, b.healthy, b.state) == ("n1", True, "ready")
        assert b.endpoint.endswith(f":{ports['tiny-b']}")

        # Scale from zero: two concurrent calls (by alias and by name) share one start, on n2
        # (n1 runs tiny-b and is never taken).
        ask = gateway_pb2.EnsureModelRequest
        with ThreadPoolExecutor(2) as pool:
            calls = [pool.submit(stub.EnsureModel, ask(name=n, gateway="test-gw"))
                     for n in ("tiny-a", "tiny-a-alias")]  # fmt: skip
            one, two = (call.result() for call in calls)
        assert (one.state, two.state) == ("starting", "starting")
        assert one.operation_id and one.operation_id == two.operation_id
        assert list(one.nodes) == ["n2"] == list(two.nodes)
        loading = follower.until(lambda t: state(t, "tiny-a") == "loading", "tiny-a loading", 10)
        assert one.operation_id in next(m.message for m in loading.models if m.name == "tiny-a")
        up = follower.until(lambda t: state(t, "tiny-a") == "ready", "tiny-a ready")
        assert replicas(up, "tiny-a") == [("n2", True, "ready")]
        assert stub.EnsureModel(ask(name="tiny-a", gateway="test-gw")).state == "ready"
        operation = cluster.json("ops", "show", one.operation_id)
        assert (operation["kind"], operation["status"]) == ("model-switch", "succeeded")

        # Refusals: one line each.
        with pytest.raises(grpc.RpcError) as caught:
            stub.EnsureModel(ask(name="tiny-x", gateway="test-gw"))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert "did you mean" in str(caught.value.details())
        with pytest.raises(grpc.RpcError) as caught:
            stub.EnsureModel(ask(name="tiny-c", gateway="test-gw"))
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert caught.value.details() == (
            "model tiny-c starts on n1 (its gateway.node), and n1 runs model tiny-b: stop it "
            "first (`hubctl models stop tiny-b`), or change gateway.node"
        )

        # Idle unload: a request in flight holds tiny-a past its ttl of 3 s; once it finished,
        # tiny-a is stopped 3 s later; tiny-b (no idle_ttl) stays.
        def report(in_flight: int, finished: datetime | None) -> float:
            seen = gateway_pb2.ModelActivity(model="tiny-a", in_flight=in_flight, requests=1)
            if finished is not None:
                stamp = Timestamp()
                stamp.FromDatetime(finished)
                seen.last_finished.CopyFrom(stamp)
            ack = stub.ReportActivity(gateway_pb2.ActivityReport(gateway="test-gw",
                                                                 models=[seen]))  # fmt: skip
            return float(ack.interval_s)

        assert report(1, None) > 0
        held_until = time.monotonic() + 4.5
        while time.monotonic() < held_until:
            report(1, None)
            time.sleep(0.5)
        assert state(follower.latest, "tiny-a") == "ready"
        finished = datetime.now(UTC)
        report(0, finished)

        def stopping(table: gateway_pb2.RouteTable) -> bool:
            model = next(m for m in table.models if m.name == "tiny-a")
            return model.state == "loading" and model.message.startswith("being stopped on n2")

        # While its stop runs, the table says so (sent at once) and routes nothing to it.
        during = follower.until(stopping, "tiny-a being stopped", 20)
        assert [(node, healthy) for node, healthy, _ in replicas(during, "tiny-a")] == [
            ("n2", False)]  # fmt: skip
        stopped = follower.until(lambda t: state(t, "tiny-a") == "stopped", "tiny-a stopped", 20)
        took = datetime.now(UTC) - finished
        assert took.total_seconds() >= 2.9, took
        assert replicas(stopped, "tiny-a") == [] and state(stopped, "tiny-b") == "ready"

        # A stop under way: EnsureModel answers "starting" at once, naming the stop, and the
        # model starts afresh once the stop has finished.
        assert stub.EnsureModel(ask(name="tiny-a", gateway="test-gw")).state == "starting"
        follower.until(lambda t: state(t, "tiny-a") == "ready", "tiny-a ready again")
        models = models_pb2_grpc.ModelsStub(channel)
        stop = models.StopModel(models_pb2.StopModelRequest(name="tiny-a"))
        during = stub.EnsureModel(ask(name="tiny-a", gateway="test-gw"))
        assert (during.state, during.operation_id) == ("starting", stop.id)
        assert "is being stopped" in during.message
        # Loading all along (never stopped in between: a gateway keeps waiting), then ready.
        seen = len(follower.tables)
        follower.until(lambda t: state(t, "tiny-a") == "loading", "tiny-a not routed", 5)
        follower.until(lambda t: state(t, "tiny-a") == "ready", "tiny-a started afresh")
        with follower.lock:
            between = [state(t, "tiny-a") for t in follower.tables[seen:]]
        assert set(between) == {"loading", "ready"} and between[-1] == "ready", between
        assert cluster.json("ops", "show", stop.id)["status"] == "succeeded"
        restart, stopped = cluster.json("ops")[:2]  # the newest first
        assert stopped["id"] == stop.id and (restart["kind"], restart["configuration"]) == (
            "model-switch", "model-tiny-a")  # fmt: skip
        assert restart["created"] >= cluster.json("ops", "show", stop.id)["finished"]
        # Nobody reports activity: idle 3 s after its start, it is stopped again.
        follower.until(lambda t: state(t, "tiny-a") == "stopped", "tiny-a idle again", 20)

        # A start that fails: the model's state says why.
        bad = stub.EnsureModel(ask(name="tiny-bad", gateway="test-gw"))
        assert (bad.state, list(bad.nodes)) == ("starting", ["n2"])

        def why(table: gateway_pb2.RouteTable) -> str:
            found = next(m for m in table.models if m.name == "tiny-bad")
            return found.message if found.state == "failed" else ""

        said = f"its start failed (operation {bad.operation_id}): n2: "
        failed = follower.until(lambda t: why(t).startswith(said), "tiny-bad's failure")
        assert "not healthy" in why(failed), why(failed)

        # GpuStats: the cluster's GPUs (n2's inventory; n1 has none).
        gpus = stub.GpuStats(gateway_pb2.GpuStatsRequest())
        assert isinstance(gpus, hub_pb2.ListGpusResponse)
        assert {g.node for g in gpus.gpus} == {"n2"} and len(gpus.gpus) == 2

        # An agent gone: its replica loses its endpoint and route at once.
        n1 = next(d for d in cluster.daemons if d.name == "agent-n1")
        n1.kill()
        down = follower.until(lambda t: replicas(t, "tiny-b") == [("n1", False, "down")],
                              "n1's replica down", 15)  # fmt: skip
        assert [r.endpoint for r in down.replicas if r.model == "tiny-b"] == [""]
        assert state(down, "tiny-b") == "stopped"
        generations = [t.generation for t in follower.tables]
        assert generations == sorted(set(generations))  # each table a new generation
    finally:
        follower.call.cancel()
        channel.close()
