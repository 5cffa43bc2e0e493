from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GpuVendor(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GPU_VENDOR_UNSPECIFIED: _ClassVar[GpuVendor]
    GPU_VENDOR_NVIDIA: _ClassVar[GpuVendor]
    GPU_VENDOR_AMD: _ClassVar[GpuVendor]
    GPU_VENDOR_OTHER: _ClassVar[GpuVendor]

class GpuState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GPU_STATE_UNSPECIFIED: _ClassVar[GpuState]
    GPU_STATE_OK: _ClassVar[GpuState]
    GPU_STATE_LOST: _ClassVar[GpuState]

class NodeStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NODE_STATUS_UNSPECIFIED: _ClassVar[NodeStatus]
    NODE_STATUS_READY: _ClassVar[NodeStatus]
    NODE_STATUS_DOWN: _ClassVar[NodeStatus]

class TaskStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_STATUS_UNSPECIFIED: _ClassVar[TaskStatus]
    TASK_STATUS_OK: _ClassVar[TaskStatus]
    TASK_STATUS_CHANGED: _ClassVar[TaskStatus]
    TASK_STATUS_FAILED: _ClassVar[TaskStatus]
    TASK_STATUS_SKIPPED: _ClassVar[TaskStatus]
    TASK_STATUS_CANCELLED: _ClassVar[TaskStatus]
GPU_VENDOR_UNSPECIFIED: GpuVendor
GPU_VENDOR_NVIDIA: GpuVendor
GPU_VENDOR_AMD: GpuVendor
GPU_VENDOR_OTHER: GpuVendor
GPU_STATE_UNSPECIFIED: GpuState
GPU_STATE_OK: GpuState
GPU_STATE_LOST: GpuState
NODE_STATUS_UNSPECIFIED: NodeStatus
NODE_STATUS_READY: NodeStatus
NODE_STATUS_DOWN: NodeStatus
TASK_STATUS_UNSPECIFIED: TaskStatus
TASK_STATUS_OK: TaskStatus
TASK_STATUS_CHANGED: TaskStatus
TASK_STATUS_FAILED: TaskStatus
TASK_STATUS_SKIPPED: TaskStatus
TASK_STATUS_CANCELLED: TaskStatus

class GpuProcess(_message.Message):
    __slots__ = ("pid", "used_memory_mb", "managed")
    PID_FIELD_NUMBER: _ClassVar[int]
    USED_MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    MANAGED_FIELD_NUMBER: _ClassVar[int]
    pid: int
    used_memory_mb: int
    managed: bool
    def __init__(self, pid: _Optional[int] = ..., used_memory_mb: _Optional[int] = ..., managed: _Optional[bool] = ...) -> None: ...

class Gpu(_message.Message):
    __slots__ = ("index", "uuid", "name", "vendor", "memory_total_mb", "memory_used_mb", "compute_capability", "state", "memory_free_mb", "utilization_percent", "temperature_c", "power_draw_w", "power_limit_w", "gfx_target", "pci_bus_id", "driver_version", "processes")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    UUID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VENDOR_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_MB_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USED_MB_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FREE_MB_FIELD_NUMBER: _ClassVar[int]
    UTILIZATION_PERCENT_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_C_FIELD_NUMBER: _ClassVar[int]
    POWER_DRAW_W_FIELD_NUMBER: _ClassVar[int]
    POWER_LIMIT_W_FIELD_NUMBER: _ClassVar[int]
    GFX_TARGET_FIELD_NUMBER: _ClassVar[int]
    PCI_BUS_ID_FIELD_NUMBER: _ClassVar[int]
    DRIVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    index: int
    uuid: str
    name: str
    vendor: GpuVendor
    memory_total_mb: int
    memory_used_mb: int
    compute_capability: str
    state: GpuState
    memory_free_mb: int
    utilization_percent: int
    temperature_c: float
    power_draw_w: float
    power_limit_w: float
    gfx_target: str
    pci_bus_id: str
    driver_version: str
    processes: _containers.RepeatedCompositeFieldContainer[GpuProcess]
    def __init__(self, index: _Optional[int] = ..., uuid: _Optional[str] = ..., name: _Optional[str] = ..., vendor: _Optional[_Union[GpuVendor, str]] = ..., memory_total_mb: _Optional[int] = ..., memory_used_mb: _Optional[int] = ..., compute_capability: _Optional[str] = ..., state: _Optional[_Union[GpuState, str]] = ..., memory_free_mb: _Optional[int] = ..., utilization_percent: _Optional[int] = ..., temperature_c: _Optional[float] = ..., power_draw_w: _Optional[float] = ..., power_limit_w: _Optional[float] = ..., gfx_target: _Optional[str] = ..., pci_bus_id: _Optional[str] = ..., driver_version: _Optional[str] = ..., processes: _Optional[_Iterable[_Union[GpuProcess, _Mapping]]] = ...) -> None: ...

class GpuTelemetry(_message.Message):
    __slots__ = ("index", "state", "memory_used_mb", "memory_free_mb", "utilization_percent", "temperature_c", "power_draw_w", "processes")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USED_MB_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FREE_MB_FIELD_NUMBER: _ClassVar[int]
    UTILIZATION_PERCENT_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_C_FIELD_NUMBER: _ClassVar[int]
    POWER_DRAW_W_FIELD_NUMBER: _ClassVar[int]
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    index: int
    state: GpuState
    memory_used_mb: int
    memory_free_mb: int
    utilization_percent: int
    temperature_c: float
    power_draw_w: float
    processes: _containers.RepeatedCompositeFieldContainer[GpuProcess]
    def __init__(self, index: _Optional[int] = ..., state: _Optional[_Union[GpuState, str]] = ..., memory_used_mb: _Optional[int] = ..., memory_free_mb: _Optional[int] = ..., utilization_percent: _Optional[int] = ..., temperature_c: _Optional[float] = ..., power_draw_w: _Optional[float] = ..., processes: _Optional[_Iterable[_Union[GpuProcess, _Mapping]]] = ...) -> None: ...

class Inventory(_message.Message):
    __slots__ = ("probe", "probe_error", "gpus", "preflight")
    PROBE_FIELD_NUMBER: _ClassVar[int]
    PROBE_ERROR_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    PREFLIGHT_FIELD_NUMBER: _ClassVar[int]
    probe: str
    probe_error: str
    gpus: _containers.RepeatedCompositeFieldContainer[Gpu]
    preflight: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, probe: _Optional[str] = ..., probe_error: _Optional[str] = ..., gpus: _Optional[_Iterable[_Union[Gpu, _Mapping]]] = ..., preflight: _Optional[_Iterable[str]] = ...) -> None: ...
