"""Label selectors on the hub: which nodes an operation's Targets name, filtered pages that
stay correct, and the audit log's readable summary of a request."""

from __future__ import annotations

import pytest

from gpufleet.selectors import parse
from gpufleet.v1 import assign_pb2, hub_pb2, trust_pb2
from hub.selection import Known, NoMatch, label_filter, targeted
from hub.store.scan import kept
from hub.trust.summary import DETAIL_CHARS, summarize

KNOWN = [
    Known("gpu-a", True, {"role": "chat", "zone": "a"}),
    Known("gpu-b", True, {"role": "batch"}),
    Known("gpu-c", False, {"role": "chat"}),  # down
    Known("gpu-d", True, {"role": "chat", "spot": "yes"}),
]


def test_without_a_selector_targets_are_as_before() -> None:
    assert targeted(["gpu-b", "gpu-x"], False, (), KNOWN) == ["gpu-b", "gpu-x"]
    assert targeted([], True, (), KNOWN) == ["gpu-a", "gpu-b", "gpu-c", "gpu-d"]
    assert label_filter(()) is None


def test_a_selector_alone_means_every_connected_node_that_matches() -> None:
    assert targeted([], False, parse(["role=chat"]), KNOWN) == ["gpu-a", "gpu-d"]
    assert targeted([], False, parse(["role=chat,!spot"]), KNOWN) == ["gpu-a"]
    assert targeted([], False, parse(["role!=chat"]), KNOWN) == ["gpu-b"]


def test_with_all_every_known_node_that_matches() -> None:
    assert targeted([], True, parse(["role=chat"]), KNOWN) == ["gpu-a", "gpu-c", "gpu-d"]


def test_with_names_each_must_match() -> None:
    assert targeted(["gpu-d", "gpu-a"], False, parse(["role=chat"]), KNOWN) == ["gpu-d", "gpu-a"]
    with pytest.raises(NoMatch) as refused:
        targeted(["gpu-a", "gpu-b"], False, parse(["role=chat"]), KNOWN)
    assert str(refused.value) == (
        "gpu-b does not match role=chat: `hubctl nodes -l role=chat` lists the nodes that do"
    )
    # An unknown name is the operation manager's to refuse ("unknown node ...").
    assert targeted(["gpu-x"], False, parse(["role=chat"]), KNOWN) == ["gpu-x"]


def test_no_match_is_one_line() -> None:
    with pytest.raises(NoMatch) as refused:
        targeted([], False, parse(["role=gpu"]), KNOWN)
    assert str(refused.value) == (
        "no connected node matches role=gpu: `hubctl nodes` shows each node's labels and status"
    )
    with pytest.raises(NoMatch, match=r"^no node matches zone=b: "):
        targeted([], True, parse(["zone=b"]), KNOWN)


def test_filtered_pages_hold_every_match_once_in_order() -> None:
    rows = [(f"n{i:03d}", i % 3 == 0) for i in range(250)]

    def fetch(after: str, most: int) -> list[tuple[str, bool]]:
        return [row for row in rows if row[0] > after][:most]

    pages, after = [], ""
    while page := kept(fetch, lambda row: row[0], after, lambda row: row[1], 7, chunk=10):
        pages.append(page)
        after = page[-1][0]
    assert [row for page in pages for row in page] == [row for row in rows if row[1]]
    assert {len(page) for page in pages[:-1]} == {7}
    assert kept(fetch, lambda row: row[0], "", lambda row: row[1], None, chunk=10) == [
        row for row in rows if row[1]
    ]
    assert kept(fetch, lambda row: row[0], "", lambda row: False, 5, chunk=10) == []


def test_the_audit_summary_is_readable_and_bounded() -> None:
    switch = hub_pb2.SwitchRequest(
        configuration="big-chat", serial=1, check=True,
        targets=hub_pb2.Targets(nodes=["gpu-a"], selector=["role=chat"]),
    )  # fmt: skip
    assert summarize(switch) == "big-chat nodes=gpu-a selector=role=chat serial=1 check"
    assert summarize(hub_pb2.StopRequest(targets=hub_pb2.Targets(all=True))) == "all"
    token = trust_pb2.CreateTokenRequest(
        role=trust_pb2.ROLE_AGENT, ttl_seconds=3600, labels={"zone": "a", "role": "chat"}
    )
    assert summarize(token) == "role=agent ttl_seconds=3600 labels=role=chat,zone=a"
    joined = summarize(trust_pb2.JoinRequest(token="gft1.a.b.c", csr_pem="PEM", name="gpu-c"))
    assert joined == "gpu-c token=<redacted> csr_pem=<redacted>"
    pin = assign_pb2.SetAssignmentRequest(configuration="c", service="llm", node="n", gpus=[0, 1])
    assert summarize(pin) == "c service=llm node=n gpus=0,1"
    many = hub_pb2.SwitchRequest(
        configuration="x" * 500, targets=hub_pb2.Targets(nodes=[f"n{i}" for i in range(999)])
    )
    line = summarize(many)
    assert len(line) <= DETAIL_CHARS and "(+994 more)" in line and "x" * 60 not in line
    assert summarize(hub_pb2.ValidateConfigurationRequest(content="a" * 9000)) == (
        "content=<9000 characters>"
    )
    assert summarize("not a message") == ""
