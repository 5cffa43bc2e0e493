"""`gpufleet-agent probe`: what this host's GPU probe and podman preflight see, for a person
or a script. NVML counts memory in MiB; people read GiB (MiB / 1024), labelled as such."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from agent.probes import GpuInfo, ProbeResult


def free_mb(gpu: GpuInfo) -> int | None:
    """Free memory: as reported, else total - used when the total is known."""
    if gpu.memory_free_mb is not None:
        return gpu.memory_free_mb
    if gpu.memory_total_mb > 0:
        return max(0, gpu.memory_total_mb - gpu.memory_used_mb)
    return None


def _gpu_json(gpu: GpuInfo) -> dict[str, Any]:
    found = asdict(gpu)
    # The probe alone cannot tell which processes are gpufleet's (the running agent does).
    found["processes"] = [{"pid": p.pid, "used_memory_mb": p.used_memory_mb}
                          for p in gpu.processes]  # fmt: skip
    return found


def as_json(result: ProbeResult, preflight: Sequence[str] = ()) -> dict[str, Any]:
    return {
        "probe": result.probe,
        "error": result.error or None,
        "gpus": [_gpu_json(gpu) for gpu in result.gpus],
        "preflight": list(preflight),
    }


def gib(mib: int) -> str:
    return f"{mib / 1024:.1f}"


def _na(value: object, unit: str = "", fmt: str = "{:g}") -> str:
    return "n/a" if value is None else fmt.format(value) + unit


def memory(gpu: GpuInfo) -> str:
    """e.g. "18.9 of 24.0 GiB used, 5.1 GiB free"."""
    if gpu.memory_total_mb <= 0:
        return f"{gib(gpu.memory_used_mb)} GiB used, total unknown"
    text = f"{gib(gpu.memory_used_mb)} of {gib(gpu.memory_total_mb)} GiB used"
    free = free_mb(gpu)
    return text + (f", {gib(free)} GiB free" if free is not None else "")


def _process(pid: int, used_mb: int, managed: bool) -> str:
    return f"{pid} ({gib(used_mb)} GiB{', gpufleet' if managed else ''})"


def _gpu_lines(gpu: GpuInfo) -> list[str]:
    ident = (gpu.compute_capability and f"cc {gpu.compute_capability}") or gpu.gfx_target
    head = f"GPU {gpu.index}  {gpu.name}  {gpu.uuid or '-'}  {gpu.pci_bus_id or '-'}"
    if ident:
        head += f"  {ident}"
    if gpu.state == "lost":
        return [head + "  LOST (the driver lost this GPU)"]
    power = f"{_na(gpu.power_draw_w, fmt='{:.0f}')}/{_na(gpu.power_limit_w, ' W', '{:.0f}')}"
    lines = [
        head,
        f"      VRAM {memory(gpu)}  util {_na(gpu.utilization_percent, '%')}  "
        f"temp {_na(gpu.temperature_c, ' C', '{:.0f}')}  power {power}",
    ]
    if gpu.processes:
        procs = ", ".join(_process(p.pid, p.used_memory_mb, p.managed) for p in gpu.processes)
        lines.append(f"      processes: {procs}")
    return lines


def preflight_lines(preflight: Sequence[str]) -> list[str]:
    if not preflight:
        return ["podman preflight: ok (podman, podman-compose, network backend, OCI runtime, "
                "GPU devices)"]  # fmt: skip
    count = f"{len(preflight)} problem{'s' if len(preflight) > 1 else ''}"
    return [f"podman preflight: {count}, compose runs will fail until fixed:"] + [
        f"  - {line}" for line in preflight
    ]


def as_text(result: ProbeResult, preflight: Sequence[str] | None = None) -> str:
    driver = next((gpu.driver_version for gpu in result.gpus if gpu.driver_version), "")
    lines = [f"probe: {result.probe}" + (f" (driver {driver})" if driver else "")]
    if not result.gpus:
        lines.append("No GPUs detected" + (f": {result.error}" if result.error else "."))
    for gpu in result.gpus:
        lines += _gpu_lines(gpu)
    if preflight is not None:
        lines += preflight_lines(preflight)
    return "\n".join(lines)
