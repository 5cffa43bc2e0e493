"""Where models run (hub.models.running): a node's state and endpoint, and `down` with no
endpoint once its agent is not connected (its last switch state says nothing then)."""

from __future__ import annotations

from datetime import UTC, datetime

from hub.models.running import running, where
from hub.store.deployments import Deployed
from hub.store.models import Node

T0 = datetime(2026, 11, 30, 18, 0, tzinfo=UTC)


def node(name: str) -> Node:
    return Node(name=name, hostname=f"{name}.lan", first_seen=T0, status_since=T0,
                state="ready", configuration="model-tiny-a", state_since=T0)  # fmt: skip


def test_a_node_whose_agent_is_gone_is_down_without_an_endpoint() -> None:
    stored = {n: Deployed(n, "tiny-a", "llama-cpp", "model-tiny-a", (0,), 8000, "d", T0)
              for n in ("up", "gone")}  # fmt: skip
    up, gone = running([node("up"), node("gone")], stored, lambda n: n.configuration,
                       lambda n: n.name == "up")  # fmt: skip
    assert (up.state, up.endpoint, where(up)) == ("ready", "http://up.lan:8000", "up (GPU 0)")
    assert (gone.state, gone.endpoint, where(gone)) == ("down", "", "gone (GPU 0, down)")
    assert gone.message == "its agent is not connected" and gone.model == "tiny-a"
