"""`gpufleet-agent probe`: what this host's GPU probe sees, for a person or a script."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from agent.probes import GpuInfo, ProbeResult


def as_json(result: ProbeResult) -> dict[str, Any]:
    return {
        "probe": result.probe,
        "error": result.error or None,
        "gpus": [asdict(gpu) for gpu in result.gpus],
    }


def _na(value: object, unit: str = "", fmt: str = "{:g}") -> str:
    return "n/a" if value is None else fmt.format(value) + unit


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
        f"      VRAM {gpu.memory_used_mb}/{gpu.memory_total_mb} MiB used "
        f"(free {_na(gpu.memory_free_mb, ' MiB')})  util {_na(gpu.utilization_percent, '%')}  "
        f"temp {_na(gpu.temperature_c, ' C', '{:.0f}')}  power {power}",
    ]
    if gpu.processes:
        procs = ", ".join(f"{p.pid} ({p.used_memory_mb} MiB)" for p in gpu.processes)
        lines.append(f"      processes: {procs}")
    return lines


def as_text(result: ProbeResult) -> str:
    driver = next((gpu.driver_version for gpu in result.gpus if gpu.driver_version), "")
    lines = [f"probe: {result.probe}" + (f" (driver {driver})" if driver else "")]
    if not result.gpus:
        lines.append("No GPUs detected" + (f": {result.error}" if result.error else "."))
    for gpu in result.gpus:
        lines += _gpu_lines(gpu)
    return "\n".join(lines)
