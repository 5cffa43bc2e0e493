"""The routing table the hub streams to gateways: pure, from what the hub knows at one moment.

A model is routed by its name, aliases and served name to its replicas: the nodes that run
its deployment (`hub.models.running`). A replica is healthy when its node's agent is
connected, its last report says every service of the model's project runs and passed its
health check, and the node is not being drained or switched away; a node that is down has no
endpoint and no route. A model's state:

  ready    a replica is healthy
  loading  a start is under way (an operation), a stop is (its replicas take no more
           requests: a request starts it afresh), or a replica runs and is not healthy yet
  failed   every replica failed, or its last start by the gateway failed (message: why)
  stopped  it runs nowhere (on nodes that are down at most)
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from hub.models.running import DOWN, Running
from hub.models.schema import Model
from hub.states import NodeState
from hub.store.keys import KeyHash

READY, LOADING, STOPPED, FAILED = "ready", "loading", "stopped", "failed"
NOT_SERVING = (NodeState.DRAINING.value, NodeState.SWITCHING.value)


@dataclass(frozen=True)
class RouteModel:
    name: str
    aliases: tuple[str, ...]
    served_model_name: str
    engine: str
    state: str
    message: str
    load_timeout_s: float
    idle_ttl_s: float  # 0: never stopped for idleness
    description: str = ""


@dataclass(frozen=True)
class Replica:
    model: str
    node: str
    endpoint: str  # "" while the node is down
    healthy: bool
    state: str  # the node's switch state, or "down"
    message: str = ""
    in_flight: int = 0  # requests to it over the gateways, as they last reported


@dataclass(frozen=True)
class RouteTable:
    """One table; the generation a gateway sees is the service's business (sent tables only)."""

    models: tuple[RouteModel, ...] = ()
    replicas: tuple[Replica, ...] = ()
    keys: tuple[KeyHash, ...] = ()
    errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class Starting:
    """A start under way for a model: its operation and nodes (a switch; or a stop the start
    waits for, which `message` then says)."""

    operation_id: str
    nodes: tuple[str, ...]
    message: str = ""


def replica(found: Running, serving: Mapping[str, str], stopping: Collection[str] = (),
            in_flight: int = 0) -> Replica:  # fmt: skip
    """`serving`: node -> the project its agent reports with every service healthy;
    `stopping`: the nodes where a stop of the model is under way."""
    healthy = (
        bool(found.endpoint)
        and found.state != DOWN
        and found.state not in NOT_SERVING
        and serving.get(found.node) == found.project
        and found.node not in stopping
    )
    return Replica(found.model, found.node, found.endpoint, healthy, found.state, found.message,
                   in_flight if found.endpoint else 0)  # fmt: skip


def state(replicas: Sequence[Replica], starting: Starting | None, failure: str,
          stopping: Starting | None = None) -> tuple[str, str]:  # fmt: skip
    """(state, message) of a model from its replicas, a start under way, the failure of its
    last start by a gateway ("" when none) and a stop under way."""
    if any(r.healthy for r in replicas):
        return READY, ""
    if starting is not None:
        where = ", ".join(starting.nodes)
        return LOADING, starting.message or (
            f"starting on {where} (operation {starting.operation_id})")  # fmt: skip
    if stopping is not None:
        return LOADING, (f"being stopped on {', '.join(stopping.nodes)} (operation "
                         f"{stopping.operation_id}): a request starts it again")  # fmt: skip
    if failure:
        return FAILED, failure
    up = [r for r in replicas if r.state != DOWN]
    if up and all(r.state == NodeState.FAILED.value for r in up):
        return FAILED, "; ".join(f"{r.node}: {r.message or 'failed'}" for r in up)
    if up:
        return LOADING, "; ".join(f"{r.node}: {r.message or r.state}" for r in up)
    if replicas:
        down = ", ".join(r.node for r in replicas)
        return STOPPED, f"runs only on {down}, which {'is' if len(replicas) == 1 else 'are'} down"
    return STOPPED, ""


def build(models: Sequence[Model], errors: Sequence[str], found: Sequence[Running],
          serving: Mapping[str, str], starting: Mapping[str, Starting],
          failures: Mapping[str, str], keys: Sequence[KeyHash],
          stopping: Mapping[str, Starting] | None = None,
          in_flight: Mapping[str, int] | None = None) -> RouteTable:  # fmt: skip
    """The table: `models` defined, `found` where models run, `serving` node -> the project
    whose services are healthy there, `starting` model -> its switch under way, `failures`
    model -> why its last start by a gateway failed, `keys` the valid API keys, `stopping`
    model -> its stop under way (its replicas there take no more requests), `in_flight`
    endpoint -> requests to it over the gateways."""
    defined = {model.name for model in models}
    stopping = stopping or {}
    counts = in_flight or {}
    replicas = tuple(
        replica(r, serving, stopping.get(r.model, Starting("", ())).nodes,
                counts.get(r.endpoint, 0))
        for r in sorted(found, key=lambda r: (r.model, r.node))
        if r.model in defined
    )  # fmt: skip
    routed = []
    for model in sorted(models, key=lambda m: m.name):
        mine = [r for r in replicas if r.model == model.name]
        now, message = state(mine, starting.get(model.name), failures.get(model.name, ""),
                             stopping.get(model.name))  # fmt: skip
        routed.append(RouteModel(
            model.name, model.aliases, model.served_model_name, model.engine, now, message,
            model.gateway.load_timeout_s(model.engine), model.gateway.idle_ttl or 0.0,
            model.description,
        ))  # fmt: skip
    ordered = tuple(sorted(keys, key=lambda k: (k.name, k.sha256)))
    return RouteTable(tuple(routed), replicas, ordered, tuple(errors))
