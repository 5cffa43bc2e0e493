"""hubctl nodes, gpus and status against a paging hub: rows print as pages come, filters and
--limit go to the hub, bad flag values are refused before any call.

The hub here is a real gRPC server at the process edge that pages NODES canned nodes by name
as a hub does, honours names, and records each request; it can hold its later pages until
the test lets them go."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest

from gpufleet.v1 import hub_pb2, hub_pb2_grpc, types_pb2
from hub import limits
from tests.support.procs import REPO

NODES = 250
LONG = "node-200-" + "x" * 60  # wider than anything on the first page


def name(i: int) -> str:
    return LONG if i == 200 else f"node-{i:03d}"


class PagingHub(hub_pb2_grpc.HubServicer):  # type: ignore[misc]
    def __init__(self) -> None:
        self.requests: list[object] = []
        self.release = threading.Event()
        self.release.set()

    def _page(self, request: object) -> tuple[list[int], str]:
        self.requests.append(request)
        after = limits.Page.key(request.page_token, 1)[0] if request.page_token else ""  # type: ignore[attr-defined]
        if after:
            assert self.release.wait(30), "the test never let the later pages go"
        wanted = set(request.names)  # type: ignore[attr-defined]
        found = [i for i in range(NODES) if name(i) > after and (not wanted or name(i) in wanted)]
        size = request.page_size or 500  # type: ignore[attr-defined]
        page = found[:size]
        return page, limits.Page.token(name(page[-1])) if len(found) > size else ""

    def ListNodes(self, request: hub_pb2.ListNodesRequest, context: object) -> object:
        page, token = self._page(request)
        nodes = [hub_pb2.Node(name=name(i), status=types_pb2.NODE_STATUS_READY, gpu_count=1,
                              labels={"rack": str(i // 10)}) for i in page]  # fmt: skip
        return hub_pb2.ListNodesResponse(nodes=nodes, next_page_token=token)

    def ListGpus(self, request: hub_pb2.ListGpusRequest, context: object) -> object:
        page, token = self._page(request)
        gpus = [hub_pb2.NodeGpu(node=name(i), gpu=types_pb2.Gpu(
            index=0, name="NVIDIA H100", memory_total_mb=81559, state=types_pb2.GPU_STATE_LOST))
            for i in page]  # fmt: skip
        return hub_pb2.ListGpusResponse(gpus=gpus, next_page_token=token)

    def GetStatus(self, request: hub_pb2.GetStatusRequest, context: object) -> object:
        page, token = self._page(request)
        states = [hub_pb2.NodeState(node=name(i), status=types_pb2.NODE_STATUS_DOWN,
                                    state="failed") for i in page]  # fmt: skip
        return hub_pb2.GetStatusResponse(nodes=states, next_page_token=token)


@pytest.fixture
def paging() -> Iterator[tuple[PagingHub, str]]:
    hub = PagingHub()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    hub_pb2_grpc.add_HubServicer_to_server(hub, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield hub, f"127.0.0.1:{port}"
    hub.release.set()
    server.stop(None)


def hubctl(address: str, *argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cli", *argv, "--hub", address], cwd=REPO, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "GPUFLEET_INSECURE": "1"},
    )  # fmt: skip


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=60)
    return process.returncode, out, err


def test_rows_print_as_pages_come_in_widths_of_the_first_page(
    paging: tuple[PagingHub, str],
) -> None:
    hub, address = paging
    hub.release.clear()  # the hub holds every page after the first
    process = hubctl(address, "nodes")
    assert process.stdout is not None
    header = process.stdout.readline()
    first = [process.stdout.readline() for _ in range(100)]
    hub.release.set()
    code, rest, err = finish(process)
    assert code == 0, err
    assert header.split() == ["NAME", "STATUS", "LABELS", "GPUS", "LAST", "HEARTBEAT"]
    lines = first + rest.splitlines(keepends=True)
    assert [line.split()[0] for line in lines] == [name(i) for i in range(NODES)]
    assert "NAME" not in rest  # one header, nothing drawn again
    widths = {line.index("ready") for line in lines if not line.startswith(f" {LONG}")}
    assert widths == {header.index("STATUS")}  # every column where the first page put it
    assert next(line for line in lines if LONG in line).split()[1] == "ready"
    assert [r.page_size for r in hub.requests] == [100, 5000]  # type: ignore[attr-defined]


def test_limit_asks_the_hub_for_no_more_rows(paging: tuple[PagingHub, str]) -> None:
    hub, address = paging
    code, out, err = finish(hubctl(address, "nodes", "--limit", "130"))
    assert code == 0, err
    rows = out.splitlines()[1:]
    assert [row.split()[0] for row in rows] == [name(i) for i in range(130)]
    assert [r.page_size for r in hub.requests] == [100, 30]  # type: ignore[attr-defined]
    code, out, err = finish(hubctl(address, "gpus", "--limit", "3", "--json"))
    assert code == 0, err
    assert [g["node"] for g in json.loads(out)] == [name(i) for i in range(3)]
    assert [r.page_size for r in hub.requests[2:]] == [3]  # type: ignore[attr-defined]


def test_filters_go_to_the_hub(paging: tuple[PagingHub, str]) -> None:
    hub, address = paging
    argv = ("-n", "node-001,node-007", "--node", "node-404", "--status", "ready", "--state",
            "failed", "--state", "draining", "-l", "rack=0")  # fmt: skip
    code, out, err = finish(hubctl(address, "nodes", *argv))
    assert code == 0, err
    assert [row.split()[0] for row in out.splitlines()[1:]] == ["node-001", "node-007"]
    code, out, err = finish(hubctl(address, "status", *argv, "--json"))
    assert code == 0, err
    assert [(s["node"], s["state"]) for s in json.loads(out)] == [
        ("node-001", "failed"), ("node-007", "failed")
    ]  # fmt: skip
    nodes, status = hub.requests
    for request in (nodes, status):
        assert list(request.names) == ["node-001", "node-007", "node-404"]  # type: ignore[attr-defined]
        assert list(request.status) == ["ready"]  # type: ignore[attr-defined]
        assert list(request.state) == ["failed", "draining"]  # type: ignore[attr-defined]
        assert list(request.selector) == ["rack=0"]  # type: ignore[attr-defined]
    code, out, err = finish(hubctl(address, "gpus", "-n", "gpu-z", "--gpu-state", "lost"))
    assert (code, out) == (0, "No GPU matches --node gpu-z --gpu-state lost.\n"), err
    assert list(hub.requests[-1].gpu_state) == ["lost"]  # type: ignore[attr-defined]
    code, out, err = finish(hubctl(address, "status", "-n", "gpu-z", "--state", "ready"))
    assert (code, out) == (0, "No node matches --node gpu-z --state ready.\n"), err


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["nodes", "--status", "up"], "invalid --status 'up': one of ready, down"),
        (["status", "--state", "ready,bogus"],
         "invalid --state 'bogus': one of stopped, switching, loading, ready, failed, draining"),
        (["gpus", "--gpu-state", "gone"], "invalid --gpu-state 'gone': one of ok, lost"),
        (["gpus", "--status", ""], "invalid --status '': one of ready, down"),
    ],
)  # fmt: skip
def test_a_bad_filter_value_is_refused_before_any_call(argv: list[str], line: str) -> None:
    """No hub listens at port 9: had hubctl called, it would say it cannot reach it."""
    code, out, err = finish(hubctl("127.0.0.1:9", *argv))
    assert (code, out, err) == (2, "", f"hubctl: {line}\n")


def test_limit_must_be_positive() -> None:
    code, out, err = finish(hubctl("127.0.0.1:9", "nodes", "--limit", "0"))
    assert code == 2 and out == "" and "--limit" in err and "Traceback" not in err
