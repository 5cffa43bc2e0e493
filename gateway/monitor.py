"""The JSON of the monitoring routes: /v1/models, /services and /gpu-stats."""

from __future__ import annotations

from gateway.hub import GpuRow
from gateway.router import Router
from gateway.table import KeyHash, Table

OWNER = "gpufleet"


def models_json(table: Table, key: KeyHash | None) -> dict[str, object]:
    """OpenAI's model list, with the table's state, nodes and aliases of each model."""
    data = [
        {
            "id": model.name,
            "object": "model",
            "created": 0,
            "owned_by": OWNER,
            "served_model_name": model.served,
            "aliases": list(model.aliases),
            "state": model.state,
            "message": model.message,
            "nodes": table.nodes_of(model.name),
            "engine": model.engine,
            "description": model.description,
        }
        for model in table.models
        if key is None or key.allows(model.name)
    ]
    return {"object": "list", "data": data}


def services_json(table: Table, router: Router) -> dict[str, object]:
    services = []
    for replica in table.replicas:
        stats = router.stats(replica.endpoint) if replica.endpoint else None
        response_ms = stats.response_ms if stats is not None else None
        services.append(
            {
                "node": replica.node,
                "model": replica.model,
                "endpoint": replica.endpoint,
                "healthy": replica.healthy,
                "state": replica.state,
                "cooling_down": bool(replica.endpoint) and router.cooling(replica.endpoint),
                "response_time_ms": None if response_ms is None else round(response_ms, 3),
                "in_flight": stats.in_flight if stats is not None else 0,
                "in_flight_cluster": (
                    router.cluster_in_flight(replica) if stats is not None else replica.in_flight
                ),
            }
        )
    return {"services": services}


def gpu_stats_json(rows: list[GpuRow], table: Table | None) -> dict[str, object]:
    on_node: dict[str, list[str]] = {}
    if table is not None:
        for replica in table.replicas:
            names = on_node.setdefault(replica.node, [])
            if replica.model not in names:
                names.append(replica.model)
    gpus = [
        {
            "node": row.node,
            "node_status": row.node_status,
            "index": row.index,
            "name": row.name,
            "memory_used_mib": row.memory_used_mib,
            "memory_total_mib": row.memory_total_mib,
            "utilization_percent": row.utilization_percent,
            "temperature_c": row.temperature_c,
            "power_w": row.power_w,
            "models": sorted(on_node.get(row.node, [])),
        }
        for row in rows
    ]
    return {"gpus": gpus}
