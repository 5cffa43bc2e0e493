"""The gateway's domain values as gateway_pb2 messages: the one place they are converted."""

from __future__ import annotations

from datetime import UTC

from gpufleet.v1 import gateway_pb2
from hub.gateway.idle import Seen
from hub.gateway.routes import RouteTable

MAX_REPLICAS = 1024  # per model in one activity report
MAX_ENDPOINT = 300  # characters: http://, a host name, a port


def table(found: RouteTable, generation: int) -> gateway_pb2.RouteTable:
    return gateway_pb2.RouteTable(
        generation=generation,
        models=[
            gateway_pb2.RouteModel(
                name=m.name, aliases=list(m.aliases), served_model_name=m.served_model_name,
                engine=m.engine, state=m.state, message=m.message,
                load_timeout_s=m.load_timeout_s, idle_ttl_s=m.idle_ttl_s,
                description=m.description,
            )
            for m in found.models
        ],
        replicas=[
            gateway_pb2.Replica(model=r.model, node=r.node, endpoint=r.endpoint,
                                healthy=r.healthy, state=r.state, message=r.message,
                                in_flight=r.in_flight)
            for r in found.replicas
        ],
        keys=[
            gateway_pb2.ApiKeyHash(name=k.name, sha256=k.sha256, models=list(k.models))
            for k in found.keys
        ],
        errors=list(found.errors),
    )  # fmt: skip


def activity(report: gateway_pb2.ActivityReport) -> dict[str, Seen]:
    """A gateway's report per model (a model named twice: the last); ValueError, one line,
    for a time no clock gives or more replicas than any model has."""
    found = {}
    for m in report.models:
        if len(m.replicas) > MAX_REPLICAS:
            raise ValueError(f"model {m.model[:64]!r}: {len(m.replicas)} replicas in one report: "
                             f"at most {MAX_REPLICAS}")  # fmt: skip
        replicas = {e: n for e, n in m.replicas.items() if n and len(e) <= MAX_ENDPOINT}
        finished = None
        if m.HasField("last_finished"):
            try:
                finished = m.last_finished.ToDatetime(tzinfo=UTC)
            except (ValueError, OverflowError):
                raise ValueError(
                    f"model {m.model[:64]!r}: last_finished is out of range: send a real time"
                ) from None
        found[m.model] = Seen(m.in_flight, finished, replicas)
    return found
