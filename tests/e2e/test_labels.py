"""Label selectors through a real hub and agents: `-l role=chat` on nodes, gpus and status,
and as the target of switch, drain and stop (alone, with --node, with --all)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from gpufleet.v1 import hub_pb2, hub_pb2_grpc
from tests.support.procs import REPO, Cluster

CONFIGS = REPO / "tests" / "fixtures" / "switch-configs"


@pytest.fixture
def labelled(tmp_path: Path) -> Iterator[Cluster]:
    """gpu-a (role=chat, zone=a; two GPUs), gpu-b (role=batch; eight), gpu-c (role=chat;
    none), gpu-d (role=chat, stopped: down)."""
    cluster = Cluster(tmp_path, None, configs=CONFIGS)
    cluster.start_hub()
    try:
        cluster.agent("gpu-a", "a5500-a400.yaml", labels="role=chat,zone=a").start()
        cluster.agent("gpu-b", "h100x8.yaml", labels="role=batch").start()
        cluster.agent("gpu-c", labels="role=chat", extra=["--gpu-probe", "none"]).start()
        down = cluster.agent("gpu-d", "mi50x2.yaml", labels="role=chat").start()
        cluster.wait_status({f"gpu-{n}": "ready" for n in "abcd"})
        down.terminate()
        cluster.wait_status({"gpu-d": "down"})
        yield cluster
    finally:
        cluster.close()


def names(rows: list[dict[str, object]], key: str = "name") -> list[object]:
    return [row[key] for row in rows]


def one_line(result: object, code: int, text: str) -> None:
    assert getattr(result, "returncode", None) == code, result
    assert getattr(result, "stderr", "") == f"hubctl: {text}\n"
    assert getattr(result, "stdout", None) == ""


def test_listings_filter_by_labels(labelled: Cluster) -> None:
    cluster = labelled
    assert names(cluster.json("nodes", "-l", "role=chat")) == ["gpu-a", "gpu-c", "gpu-d"]
    assert names(cluster.json("nodes", "-l", "role=chat", "-l", "!zone")) == ["gpu-c", "gpu-d"]
    assert names(cluster.json("nodes", "-l", "role!=chat")) == ["gpu-b"]
    gpus = cluster.json("gpus", "-l", "zone=a")
    assert [(g["node"], g["index"]) for g in gpus] == [("gpu-a", 0), ("gpu-a", 1)]
    assert names(cluster.json("status", "-l", "role=batch"), "node") == ["gpu-b"]
    assert names(cluster.json("status", "--node", "gpu-b,gpu-c"), "node") == ["gpu-b", "gpu-c"]
    shown = cluster.hubctl("nodes", "-l", "role=none").stdout
    assert shown == "No node matches -l role=none.\n"

    with cluster.hub.channel() as channel:
        hub = hub_pb2_grpc.HubStub(channel)
        for request in (hub_pb2.ListNodesRequest(selector=["role=a=b"]),
                        hub_pb2.ListGpusRequest(selector=["a b"]),
                        hub_pb2.GetStatusRequest(selector=["!"])):  # fmt: skip
            with pytest.raises(grpc.RpcError) as refused:
                getattr(hub, type(request).__name__.removesuffix("Request"))(request, timeout=10)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert str(refused.value.details()).startswith("invalid label selector")


def test_labels_target_operations(labelled: Cluster) -> None:
    cluster = labelled
    check = ["switch", "alpha", "--check", "--json"]
    alone = cluster.json(*check, "-l", "role=chat")
    assert names(alone["nodes"], "node") == ["gpu-a", "gpu-c"]  # connected ones only
    every_chat = cluster.hubctl(*check, "-l", "role=chat", "--all", check=False)
    every = json.loads(every_chat.stdout)  # gpu-d is down: unreachable, exit 1
    assert every_chat.returncode == 1
    assert names(every["nodes"], "node") == ["gpu-a", "gpu-c", "gpu-d"]
    named = cluster.json(*check, "-l", "role=chat", "--node", "gpu-c")
    assert names(named["nodes"], "node") == ["gpu-c"]
    operations = len(cluster.json("ops"))

    one_line(cluster.hubctl("drain", "-l", "role=gpu", check=False), 1,
             "no connected node matches role=gpu: `hubctl nodes` shows each node's labels "
             "and status")  # fmt: skip
    one_line(cluster.hubctl("stop", "--node", "gpu-a,gpu-b", "-l", "role=chat", check=False),
             1, "gpu-b does not match role=chat: `hubctl nodes -l role=chat` lists the nodes "
             "that do")  # fmt: skip
    every_zone_b = cluster.hubctl("switch", "alpha", "--all", "-l", "zone=b", check=False)
    one_line(every_zone_b, 1,
             "no node matches zone=b: `hubctl nodes` shows each node's labels "
             "and status")  # fmt: skip
    assert len(cluster.json("ops")) == operations  # nothing was created

    with cluster.hub.channel() as channel:
        request = hub_pb2.StopRequest(targets=hub_pb2.Targets(selector=["role=chat", "=x"]))
        with pytest.raises(grpc.RpcError) as refused:
            hub_pb2_grpc.HubStub(channel).Stop(request, timeout=10)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert refused.value.details() == (
            "invalid label selector '=x': expected KEY=VALUE, KEY!=VALUE, KEY or !KEY "
            "(e.g. -l role=chat)"
        )

    audit = cluster.json("audit", "--limit", "20")
    assert "alpha selector=role=chat check" in [e["detail"] for e in audit]


def test_detach_gives_the_id_to_a_shell_variable(labelled: Cluster) -> None:
    cluster = labelled
    started = cluster.hubctl("switch", "alpha", "-l", "zone=a", "--check", "--detach")
    operation_id = started.stdout.strip()
    assert started.stdout == f"{operation_id}\n" and " " not in operation_id
    shown = json.loads(cluster.hubctl("ops", "show", operation_id, "--json").stdout)
    assert shown["id"] == operation_id and names(shown["nodes"], "node") == ["gpu-a"]
