"""An enrolled agent that sends values out of range (2^64-1 MiB of GPU memory, NaN): its own
stream is closed with INVALID_ARGUMENT naming the field, and every other node's heartbeats
go on being written (one such value used to break every batched heartbeat write)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import pytest

from gpufleet.channel import PROTOCOL_VERSION
from gpufleet.enroll import join
from gpufleet.tls import TLS_OPTIONS
from gpufleet.v1 import agent_link_pb2 as link_pb
from gpufleet.v1 import types_pb2
from tests.support.procs import Cluster, wait_until

HUGE = 2**64 - 1
CONNECT = "/gpufleet.v1.AgentLink/Connect"


def hello(name: str, total: int = 24564) -> link_pb.AgentMessage:
    gpu = types_pb2.Gpu(index=0, uuid="GPU-evil", name="NVIDIA RTX A5500", memory_total_mb=total)
    return link_pb.AgentMessage(hello=link_pb.Hello(
        node_name=name, agent_id="e" * 32, hostname=name,
        versions=link_pb.Versions(protocol=PROTOCOL_VERSION, agent="0.1.0"),
        inventory=types_pb2.Inventory(probe="static", gpus=[gpu]),
    ))  # fmt: skip


def beats(sample: types_pb2.GpuTelemetry, seconds: float) -> Iterator[link_pb.AgentMessage]:
    """Heartbeats every 0.5 s for `seconds`, as a misbehaving agent keeps sending them."""
    deadline = time.monotonic() + seconds
    seq = 0
    while time.monotonic() < deadline:
        seq += 1
        yield link_pb.AgentMessage(heartbeat=link_pb.Heartbeat(seq=seq, gpus=[sample]))
        time.sleep(0.5)


def refusal(channel: grpc.Channel, messages: Iterator[link_pb.AgentMessage]) -> grpc.RpcError:
    call = channel.stream_stream(
        CONNECT, link_pb.AgentMessage.SerializeToString, link_pb.HubMessage.FromString
    )
    with pytest.raises(grpc.RpcError) as refused:
        for _reply in call(messages, timeout=20):
            pass
    return refused.value


def last_seen(cluster: Cluster, name: str) -> str:
    """The node's last heartbeat as the hub shows it (its session's, while connected)."""
    [node] = [n for n in cluster.json("nodes") if n["name"] == name]
    return str(node["last_seen"] or "")


@pytest.mark.parametrize("db_url", [None], ids=["sqlite"])
def test_an_agents_huge_values_close_only_its_stream(cluster: Cluster) -> None:
    good = cluster.agent("good", "a5500-a400.yaml").start()
    cluster.wait_status({"good": "ready"})
    port = int(cluster.enroll.rpartition(":")[2])
    evil = join(cluster.address, cluster.create_token(), "evil", port)
    creds = grpc.ssl_channel_credentials(evil.ca_pem, evil.key_pem, evil.cert_pem)
    channel = grpc.secure_channel(cluster.address, creds, options=TLS_OPTIONS)

    refused = refusal(channel, iter([hello("evil", total=HUGE)]))
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.details() == (
        "hello refused: GPU 0 memory_total_mb 18446744073709551615 is out of range: 0..16777216"
    )

    before = last_seen(cluster, "good")
    huge = types_pb2.GpuTelemetry(index=0, memory_used_mb=HUGE)
    refused = refusal(channel, iter([hello("evil"), *beats(huge, 6.0)]))
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "heartbeat refused: GPU 0 memory_used_mb 18446744073709551615" in str(refused.details())
    nan = types_pb2.GpuTelemetry(index=0, temperature_c=float("nan"))
    refused = refusal(channel, iter([hello("evil"), *beats(nan, 6.0)]))
    assert "heartbeat refused: GPU 0 temperature_c nan is out of range" in str(refused.details())
    channel.close()

    # The good node's heartbeats still arrive and count.
    assert before
    wait_until(lambda: last_seen(cluster, "good") > before, 10,
               "the good node's last heartbeat to advance")  # fmt: skip
    assert cluster.statuses() == {"good": "ready", "evil": "down"}
    assert good.running and "refused" not in good.log()
    audit = cluster.json("audit", "--limit", "100")
    assert any(
        e["identity"] == "node/evil" and e["result"] == "INVALID_ARGUMENT"
        and "memory_used_mb" in e["message"] for e in audit
    ), audit  # fmt: skip
    log = cluster.hub.log()
    assert "Traceback" not in log and "heartbeat refused: GPU 0 memory_used_mb" in log
