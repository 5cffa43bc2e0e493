"""Usage rows on the wire (GpuUsage). The message has no presence for the optional values: a
GPU that never reported utilization, temperature or power has 0 there."""

from __future__ import annotations

from gpufleet.v1 import hub_pb2
from hub.store.usage import Usage


def usage_to_proto(row: Usage) -> hub_pb2.GpuUsage:
    found = hub_pb2.GpuUsage(
        node=row.node, index=row.gpu, span_s=row.span_s, samples=row.samples,
        utilization_avg=row.utilization_avg or 0.0, utilization_max=row.utilization_max or 0,
        memory_used_avg_mb=round(row.memory_used_avg_mb),
        memory_used_max_mb=row.memory_used_max_mb,
        temperature_max_c=row.temperature_max_c or 0.0, power_avg_w=row.power_avg_w or 0.0,
    )  # fmt: skip
    found.start.FromSeconds(row.start_s)
    return found
