"""The routing table as the gateway uses it: models, their replicas and the API keys.

The one conversion from the hub's RouteTable lives here (`from_proto`); everything else in
the gateway reads these frozen dataclasses.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from gpufleet.v1 import gateway_pb2

DEFAULT_LOAD_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Model:
    name: str
    aliases: tuple[str, ...] = ()
    served_model_name: str = ""
    engine: str = ""
    state: str = "ready"
    message: str = ""
    load_timeout_s: float = DEFAULT_LOAD_TIMEOUT_S
    idle_ttl_s: float = 0.0
    description: str = ""

    @property
    def served(self) -> str:
        return self.served_model_name or self.name


@dataclass(frozen=True)
class Replica:
    model: str
    node: str
    endpoint: str
    healthy: bool
    state: str = "ready"
    message: str = ""
    in_flight: int = 0  # over every gateway, as they last reported it to the hub

    @property
    def routable(self) -> bool:
        return self.healthy and bool(self.endpoint)


@dataclass(frozen=True)
class KeyHash:
    name: str
    sha256: str
    models: frozenset[str] = frozenset()

    def allows(self, model: str) -> bool:
        return not self.models or model in self.models


@dataclass(frozen=True)
class Table:
    generation: int = 0
    models: tuple[Model, ...] = ()
    replicas: tuple[Replica, ...] = ()
    keys: tuple[KeyHash, ...] = ()
    errors: tuple[str, ...] = ()
    _names: dict[str, Model] = field(default_factory=dict, init=False, repr=False, compare=False)
    _replicas: dict[str, tuple[Replica, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _keys: dict[str, KeyHash] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # A model's own name wins over another model's alias or served name.
        for model in self.models:
            for alias in (model.served, *model.aliases):
                self._names.setdefault(alias, model)
        for model in self.models:
            self._names[model.name] = model
            self._replicas[model.name] = tuple(r for r in self.replicas if r.model == model.name)
        self._keys.update((key.sha256, key) for key in self.keys)

    def lookup(self, name: str) -> Model | None:
        """The model a request names: by name, alias or served name."""
        return self._names.get(name)

    def replicas_of(self, model: str) -> tuple[Replica, ...]:
        return self._replicas.get(model, ())

    def routable(self, model: str) -> tuple[Replica, ...]:
        return tuple(r for r in self.replicas_of(model) if r.routable)

    def key(self, sha256: str) -> KeyHash | None:
        return self._keys.get(sha256)

    def close_names(self, name: str, allowed: frozenset[str] = frozenset()) -> list[str]:
        names = [n for n, m in self._names.items() if not allowed or m.name in allowed]
        return difflib.get_close_matches(name, names, n=3, cutoff=0.5)

    def nodes_of(self, model: str) -> list[str]:
        return sorted({r.node for r in self.replicas_of(model) if r.node})


def from_proto(message: gateway_pb2.RouteTable) -> Table:
    return Table(
        generation=message.generation,
        models=tuple(
            Model(
                name=m.name,
                aliases=tuple(m.aliases),
                served_model_name=m.served_model_name,
                engine=m.engine,
                state=m.state,
                message=m.message,
                load_timeout_s=m.load_timeout_s or DEFAULT_LOAD_TIMEOUT_S,
                idle_ttl_s=m.idle_ttl_s,
                description=m.description,
            )
            for m in message.models
        ),
        replicas=tuple(
            Replica(
                r.model,
                r.node,
                r.endpoint.rstrip("/"),
                r.healthy,
                r.state,
                r.message,
                r.in_flight,
            )
            for r in message.replicas
        ),
        keys=tuple(KeyHash(k.name, k.sha256.lower(), frozenset(k.models)) for k in message.keys),
        errors=tuple(message.errors),
    )
