"""Hostile input on both services of a real hub: random bytes to every unary Hub/Trust/
Assignments method, random frames on the agent stream, oversized messages. For a bounded
time; the hub must stay up and keep serving a well-behaved agent throughout."""

from __future__ import annotations

import struct
import time
from pathlib import Path

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpufleet.channel import PROTOCOL_VERSION
from gpufleet.enroll import join
from gpufleet.tls import TLS_OPTIONS
from gpufleet.v1 import agent_link_pb2 as link_pb
from gpufleet.v1 import assign_pb2, hub_pb2, trust_pb2, types_pb2
from tests.support.procs import Cluster

FUZZ_SECONDS = 20.0
OVERSIZED = 5 * 1024 * 1024  # the hub accepts 4 MiB messages
CONNECT = "/gpufleet.v1.AgentLink/Connect"


def unary_methods() -> list[str]:
    methods = []
    for module, service in ((hub_pb2, "Hub"), (trust_pb2, "Trust"), (assign_pb2, "Assignments")):
        descriptor = module.DESCRIPTOR.services_by_name[service]
        for method in descriptor.methods:
            if not method.client_streaming and not method.server_streaming:
                methods.append(f"/{descriptor.full_name}/{method.name}")
    return methods


def telemetry(data: bytes) -> link_pb.AgentMessage:
    """A heartbeat whose numbers come from `data`: up to 2^64-1 MiB, NaN, infinities."""
    raw = data.ljust(20, b"\0")
    memory, index = int.from_bytes(raw[:8], "little"), int.from_bytes(raw[8:12], "little")
    temperature, power = struct.unpack("<ff", raw[12:20])
    sample = types_pb2.GpuTelemetry(
        index=index % 512, memory_used_mb=memory, temperature_c=temperature, power_draw_w=power
    )
    return link_pb.AgentMessage(heartbeat=link_pb.Heartbeat(gpus=[sample]))


def frame(kind: str, data: bytes, text: str) -> bytes:
    """One agent-stream frame: raw bytes, or a well-formed message in a wrong place."""
    if kind == "telemetry":
        return telemetry(data).SerializeToString()
    messages = {
        "hello": link_pb.AgentMessage(
            hello=link_pb.Hello(
                node_name=text,
                agent_id="fuzz",
                versions=link_pb.Versions(protocol=PROTOCOL_VERSION),
            )
        ),
        "result": link_pb.AgentMessage(task_result=link_pb.TaskResult(task_id=text)),
        "heartbeat": link_pb.AgentMessage(heartbeat=link_pb.Heartbeat()),
    }
    return data if kind == "raw" else messages[kind].SerializeToString()


def stream_once(channel: grpc.Channel, frames: list[bytes]) -> grpc.StatusCode:
    return stream_ends(channel, frames)[0]


def stream_ends(channel: grpc.Channel, frames: list[bytes]) -> tuple[grpc.StatusCode, str]:
    call = channel.stream_stream(CONNECT, None, None)
    try:
        for _reply in call(iter(frames), timeout=3):
            pass
    except grpc.RpcError as exc:
        return exc.code(), str(exc.details())
    return grpc.StatusCode.OK, ""


@pytest.mark.parametrize("db_url", [None], ids=["sqlite"])
def test_fuzzing_both_services_leaves_the_hub_serving(cluster: Cluster, tmp_path: Path) -> None:
    good = cluster.agent("good", "a5500-a400.yaml").start()
    cluster.wait_status({"good": "ready"})
    port = int(cluster.enroll.rpartition(":")[2])
    fuzzer = join(cluster.address, cluster.create_token(), "fuzzer", port)
    node_creds = grpc.ssl_channel_credentials(fuzzer.ca_pem, fuzzer.key_pem, fuzzer.cert_pem)
    node = grpc.secure_channel(cluster.address, node_creds, options=TLS_OPTIONS)
    admin = cluster.hub.channel()
    methods = unary_methods()

    # The named cases first: each closes only its own stream, with INVALID_ARGUMENT.
    hello = frame("hello", b"", "fuzzer")
    assert stream_once(node, [frame("heartbeat", b"", "")]) == grpc.StatusCode.INVALID_ARGUMENT
    assert stream_ends(node, [hello, hello]) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "unexpected hello message",
    )
    unknown = frame("result", b"", "never-sent")
    assert stream_ends(node, [hello, unknown]) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "task result for unknown task 'never-sent'",
    )
    huge = frame("telemetry", b"\xff" * 8, "")  # 2^64-1 MiB
    code, details = stream_ends(node, [hello, huge])
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("heartbeat refused: GPU 0 memory_used_mb 18446744073709551615")
    big = admin.unary_unary("/gpufleet.v1.Hub/ListNodes", None, None)
    with pytest.raises(grpc.RpcError) as oversized:
        big(b"\x0a" + b"\xff" * OVERSIZED, timeout=10)
    assert oversized.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

    deadline = time.monotonic() + FUZZ_SECONDS
    seen: set[grpc.StatusCode] = set()

    @settings(max_examples=400, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(
        st.sampled_from(methods),
        st.binary(max_size=512),
        st.lists(
            st.tuples(
                st.sampled_from(["raw", "hello", "result", "heartbeat", "telemetry"]),
                st.binary(max_size=256),
                st.text(max_size=40),
            ),
            max_size=6,
        ),
    )
    def fuzz(method: str, payload: bytes, frames: list[tuple[str, bytes, str]]) -> None:
        if time.monotonic() > deadline:
            return
        try:
            admin.unary_unary(method, None, None)(payload, timeout=5)
            seen.add(grpc.StatusCode.OK)
        except grpc.RpcError as exc:
            seen.add(exc.code())
        seen.add(stream_once(node, [frame(*f) for f in frames]))
        assert cluster.hub.running, cluster.hub.log()[-3000:]

    fuzz()
    node.close()
    admin.close()

    assert cluster.hub.running
    assert grpc.StatusCode.UNAVAILABLE not in seen, seen  # no call ever found the hub gone
    assert grpc.StatusCode.INVALID_ARGUMENT in seen
    shown = cluster.json("nodes", "show", "good")
    assert shown["status"] == "ready" and good.running
    assert "refused" not in good.log() and "link to hub" not in good.log()
    assert "Traceback" not in cluster.hub.log()
    audit = cluster.json("audit", "--limit", "500")
    assert any(e["identity"] == "node/fuzzer" and e["result"] == "INVALID_ARGUMENT" for e in audit)
