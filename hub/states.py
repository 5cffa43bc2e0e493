"""A node's switch state: the states, which moves an operation may make, and what a node is
in after it reconnects or after an operation was cancelled under it.

    stopped -> switching -> loading -> ready | failed;  ready -> draining -> switching

Operations move a node only along TRANSITIONS (the store refuses any other move, so a bug
shows instead of a lie); what an agent reports it runs may put a node in any state, since it
is an observation, not a move.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True)
class Service:
    """One service as the agent reports it: its container's state and its health."""

    name: str
    state: str  # podman's container state: running, exited, ...
    health: str = ""  # healthy | unhealthy | unchecked ("" from a task result: not told)
    message: str = ""  # what the health check saw


@dataclass(frozen=True)
class Running:
    """What a node reports it runs."""

    name: str
    digest: str
    all_up: bool
    services: tuple[Service, ...] = ()


# What a node runs when its agent could not list its projects (podman did not answer).
UNKNOWN = Running("", "", False)
UNKNOWN_RUNNING = (
    "the agent could not tell what the node runs (podman did not answer): fix podman there, "
    "then try again"
)


class NodeState(StrEnum):
    STOPPED = "stopped"
    SWITCHING = "switching"
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    DRAINING = "draining"


S = NodeState
TRANSITIONS: dict[NodeState, frozenset[NodeState]] = {
    S.STOPPED: frozenset({S.SWITCHING, S.FAILED}),
    S.SWITCHING: frozenset({S.LOADING, S.FAILED, S.STOPPED}),
    # A switch cancelled while loading leaves the node failed (not known healthy).
    # Health reports put a node in loading while its checks have not passed yet: an operation
    # may then drain, switch or stop it like a ready one.
    S.LOADING: frozenset({S.READY, S.FAILED, S.DRAINING, S.SWITCHING, S.STOPPED}),
    S.READY: frozenset({S.DRAINING, S.SWITCHING, S.FAILED, S.STOPPED}),
    # A drain leaves services running: cancelled, the node is ready again.
    S.DRAINING: frozenset({S.SWITCHING, S.FAILED, S.READY, S.STOPPED}),
    S.FAILED: frozenset({S.SWITCHING, S.DRAINING, S.READY, S.STOPPED}),
}


class InvalidTransition(ValueError):
    pass


def check(before: str, after: NodeState) -> None:
    """Raise when an operation would move a node from `before` to `after` illegally; staying
    in a state (with a new note) is always allowed."""
    current = NodeState(before)
    if current != after and after not in TRANSITIONS[current]:
        raise InvalidTransition(f"a node cannot go from {current} to {after}")


def observed(project: Running | None) -> tuple[NodeState, str, str]:
    """(state, configuration, note) from what an agent reports it runs, with its health:
    ready only when every service's health check passes; failed when a container is not
    running or a check keeps failing; loading while checks have not passed yet."""
    if project is UNKNOWN:
        return S.FAILED, "", "the agent cannot tell what it runs"
    if project is None:
        return S.STOPPED, "", ""
    down = [s for s in project.services if s.state != "running"]
    if down or not project.all_up:
        what = ", ".join(f"{s.name} is {s.state or 'gone'}" for s in down)
        return S.FAILED, project.name, "not every container is running" + (
            f" ({what})" if what else "")  # fmt: skip
    sick = [s for s in project.services if s.health == "unhealthy"]
    if sick:
        return S.FAILED, project.name, f"unhealthy: {_each(sick)}"
    waiting = [s for s in project.services if s.health != "healthy"]
    if waiting or not project.services:
        what = _each(waiting) or "the agent reported no service"
        return S.LOADING, project.name, f"waiting for health checks: {what}"
    return S.READY, project.name, ""


def _each(services: list[Service]) -> str:
    """`web: http://.../health gave HTTP 404; api: not checked yet`, bounded."""
    line = "; ".join(f"{s.name}: {s.message or s.health or 'not checked yet'}" for s in services)
    return line if len(line) <= 400 else line[:397] + "..."


def after_cancel(project: Running | None, step: str) -> tuple[NodeState, str, str]:
    """(state, configuration, note) of a node whose operation was cancelled during `step`,
    given what its agent reported it runs after the cancel."""
    if project is None or project is UNKNOWN or not project.name:
        if project is UNKNOWN:
            return S.FAILED, "", f"cancelled during {step}; what runs is unknown"
        return S.STOPPED, "", f"cancelled during {step}"
    if step == "drain" and project.all_up:
        return S.READY, project.name, "drain cancelled"
    up = "all containers up" if project.all_up else "not every container is running"
    return (
        S.FAILED,
        project.name,
        f"cancelled during {step}; {project.name} runs ({up}) but was not checked healthy: "
        "switch again or stop it",
    )
