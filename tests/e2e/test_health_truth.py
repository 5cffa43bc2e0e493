"""After a hub or agent restart a node's state comes from health, not from containers that
exist: real hub, real agent, real Podman. The test image serves files: deleting its health
file makes the service answer 404 while its container keeps running."""

from __future__ import annotations

from typing import Any

from tests.support import podman
from tests.support.fleet import Fleet
from tests.support.procs import wait_until


def node_state(fleet: Fleet, name: str) -> dict[str, Any]:
    return fleet.status()[fleet.node(name)]


def becomes(fleet: Fleet, state: str, timeout: float = 30) -> dict[str, Any]:
    return wait_until(
        lambda: (found := node_state(fleet, "a"))["state"] == state and found,
        timeout,
        f"node a {state}",
    )


def test_state_comes_from_health_across_hub_and_agent_restarts(fleet: Fleet) -> None:
    agent = fleet.agent("a")
    fleet.cluster.wait_status({fleet.node("a"): "ready"})
    assert fleet.switch("alpha", "a")["status"] == "succeeded"
    assert node_state(fleet, "a")["state"] == "ready"
    [container] = fleet.containers()

    # The service breaks while its container runs: the agent's monitor sees its check fail
    # and the node leaves ready with the reason, before any restart.
    podman.podman("exec", container["id"], "rm", "/srv/health")
    broken = becomes(fleet, "failed")
    assert broken["configuration"] == "alpha" and "HTTP 404" in broken["message"], broken

    # Hub restart: the agent re-checks before its hello; the node is not ready.
    assert fleet.cluster.hub.terminate() == 0
    fleet.cluster.start_hub()
    fleet.cluster.wait_status({fleet.node("a"): "ready"}, timeout=30)  # the link
    after_hub = node_state(fleet, "a")
    assert after_hub["state"] == "failed" and "HTTP 404" in after_hub["message"], after_hub

    # Agent restart: a fresh monitor gives the check its timeout (30 s) before a verdict:
    # loading, never ready.
    assert agent.terminate() == 0
    agent.start()
    fleet.cluster.wait_status({fleet.node("a"): "ready"}, timeout=30)
    after_agent = wait_until(
        lambda: (found := node_state(fleet, "a"))["state"] != "failed" and found, 15, "hello"
    )
    assert after_agent["state"] == "loading", after_agent
    assert "not healthy yet" in after_agent["message"] and "HTTP 404" in after_agent["message"]

    # Healthy again: ready, with no operation involved, and the containers were untouched.
    podman.podman("exec", container["id"], "sh", "-c", "echo alpha > /srv/health")
    assert becomes(fleet, "ready")["configuration"] == "alpha"
    assert [c["id"] for c in fleet.containers()] == [container["id"]]
    walk = [t["to"] for t in fleet.cluster.json("nodes", "show", fleet.node("a"))["transitions"]]
    assert walk[:3] == ["ready", "loading", "failed"], walk  # newest first


def test_a_drained_node_stays_draining_while_healthy_and_says_when_it_is_not(
    fleet: Fleet,
) -> None:
    fleet.agent("a")
    fleet.cluster.wait_status({fleet.node("a"): "ready"})
    assert fleet.switch("alpha", "a")["status"] == "succeeded"
    assert fleet.hubctl("drain", fleet.node("a")).returncode == 0
    assert node_state(fleet, "a")["state"] == "draining"
    [container] = fleet.containers()

    podman.podman("exec", container["id"], "rm", "/srv/health")
    assert "HTTP 404" in becomes(fleet, "failed")["message"]
    # Healthy again, it is still drained: draining, not ready (nothing new is routed to it).
    podman.podman("exec", container["id"], "sh", "-c", "echo alpha > /srv/health")
    assert becomes(fleet, "draining")["configuration"] == "alpha"

    # Still drained after a hub restart (the agent's hello says its services are fine).
    assert fleet.cluster.hub.terminate() == 0
    fleet.cluster.start_hub()
    fleet.cluster.wait_status({fleet.node("a"): "ready"}, timeout=30)  # the link
    assert becomes(fleet, "draining")["configuration"] == "alpha"
