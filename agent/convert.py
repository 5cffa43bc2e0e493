"""Agent domain objects -> protobuf, one place per type."""

from __future__ import annotations

from agent.probes import GpuInfo, ProbeResult
from gpufleet.v1 import types_pb2

VENDOR_CODES = {
    "nvidia": types_pb2.GPU_VENDOR_NVIDIA,
    "amd": types_pb2.GPU_VENDOR_AMD,
    "other": types_pb2.GPU_VENDOR_OTHER,
}


def gpu_to_proto(gpu: GpuInfo) -> types_pb2.Gpu:
    return types_pb2.Gpu(
        index=gpu.index,
        uuid=gpu.uuid,
        name=gpu.name,
        vendor=VENDOR_CODES.get(gpu.vendor, types_pb2.GPU_VENDOR_UNSPECIFIED),
        memory_total_mb=gpu.memory_total_mb,
        memory_used_mb=gpu.memory_used_mb,
        compute_capability=gpu.compute_capability,
    )


def inventory_to_proto(result: ProbeResult) -> types_pb2.Inventory:
    return types_pb2.Inventory(
        probe=result.probe,
        probe_error=result.error,
        gpus=[gpu_to_proto(gpu) for gpu in result.gpus],
    )
