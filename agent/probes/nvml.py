"""The NVIDIA probe, through pynvml (NVIDIA's nvidia-ml-py).

NVML stays initialised between calls; a failed init is retried on the next call, so a
driver loaded after the agent started is picked up. A GPU whose handle or queries return
NVML_ERROR_GPU_IS_LOST is reported `lost` with its last known static fields; a field the
GPU does not support (NVML_ERROR_NOT_SUPPORTED, common for power on small cards) is None.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import pynvml

from agent.probes.base import LOST, GpuInfo, GpuProcess, ProbeResult

log = logging.getLogger(__name__)
T = TypeVar("T")
MIB = 1024 * 1024
UNREPORTED = (pynvml.NVMLError_NotSupported, pynvml.NVMLError_NoPermission)


def describe(error: pynvml.NVMLError) -> str:
    if isinstance(error, pynvml.NVMLError_LibraryNotFound):
        return "NVML library not found (libnvidia-ml.so.1): is the NVIDIA driver installed?"
    if isinstance(error, pynvml.NVMLError_DriverNotLoaded):
        return "NVIDIA driver not loaded (nvmlInit: Driver Not Loaded): load the nvidia module"
    return f"NVML: {error}"


def _text(value: str | bytes) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


@dataclass
class NvmlProbe:
    name: str = field(default="nvml", init=False)
    _ready: bool = field(default=False, init=False)
    _known: dict[int, GpuInfo] = field(default_factory=dict, init=False)

    def inventory(self) -> ProbeResult:
        try:
            if not self._ready:
                pynvml.nvmlInit()
                self._ready = True
            driver = _text(pynvml.nvmlSystemGetDriverVersion())
            count = pynvml.nvmlDeviceGetCount()
        except pynvml.NVMLError as error:
            self._ready = self._ready and not isinstance(error, pynvml.NVMLError_Uninitialized)
            return ProbeResult(self.name, error=describe(error))
        gpus = tuple(self._gpu(index, driver) for index in range(count))
        return ProbeResult(self.name, gpus)

    def _gpu(self, index: int, driver: str) -> GpuInfo:
        try:
            gpu = self._read(index, driver)
        except pynvml.NVMLError as error:  # lost, or no handle at all: the GPU is unusable
            if not isinstance(error, pynvml.NVMLError_GpuIsLost):
                log.warning("GPU %d: NVML cannot reach it (%s); reporting it lost", index, error)
            known = self._known.get(index)
            if known is None:
                return GpuInfo(index, "", "unknown (lost)", "nvidia", 0, 0, state=LOST)
            return replace(
                known, state=LOST, memory_free_mb=None, utilization_percent=None,
                temperature_c=None, power_draw_w=None, processes=(),
            )  # fmt: skip
        self._known[index] = gpu
        return gpu

    def _read(self, index: int, driver: str) -> GpuInfo:
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)

        def ask(query: Callable[..., T], *args: Any) -> T | None:
            try:
                return query(handle, *args)
            except pynvml.NVMLError_GpuIsLost:
                raise
            except UNREPORTED:
                return None
            except pynvml.NVMLError as error:  # one field failing must not hide the others
                log.debug("GPU %d: %s: %s", index, getattr(query, "__name__", query), error)
                return None

        memory = ask(pynvml.nvmlDeviceGetMemoryInfo)
        utilization = ask(pynvml.nvmlDeviceGetUtilizationRates)
        temperature = ask(pynvml.nvmlDeviceGetTemperature, pynvml.NVML_TEMPERATURE_GPU)
        power = ask(pynvml.nvmlDeviceGetPowerUsage)
        limit = ask(pynvml.nvmlDeviceGetEnforcedPowerLimit)
        capability = ask(pynvml.nvmlDeviceGetCudaComputeCapability)
        pci = ask(pynvml.nvmlDeviceGetPciInfo)
        processes = ask(pynvml.nvmlDeviceGetComputeRunningProcesses) or []
        return GpuInfo(
            index=index,
            uuid=_text(ask(pynvml.nvmlDeviceGetUUID) or ""),
            name=_text(ask(pynvml.nvmlDeviceGetName) or "NVIDIA GPU"),
            vendor="nvidia",
            memory_total_mb=memory.total // MIB if memory else 0,
            memory_used_mb=memory.used // MIB if memory else 0,
            memory_free_mb=memory.free // MIB if memory else None,
            compute_capability=f"{capability[0]}.{capability[1]}" if capability else "",
            utilization_percent=utilization.gpu if utilization else None,
            temperature_c=float(temperature) if temperature is not None else None,
            power_draw_w=power / 1000 if power is not None else None,
            power_limit_w=limit / 1000 if limit is not None else None,
            pci_bus_id=_text(pci.busId) if pci else "",
            driver_version=driver,
            processes=tuple(GpuProcess(p.pid, (p.usedGpuMemory or 0) // MIB) for p in processes),
        )
