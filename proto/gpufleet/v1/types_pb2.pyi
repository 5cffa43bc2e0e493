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
GPU_VENDOR_UNSPECIFIED: GpuVendor
GPU_VENDOR_NVIDIA: GpuVendor
GPU_VENDOR_AMD: GpuVendor
GPU_VENDOR_OTHER: GpuVendor
NODE_STATUS_UNSPECIFIED: NodeStatus
NODE_STATUS_READY: NodeStatus
NODE_STATUS_DOWN: NodeStatus
TASK_STATUS_UNSPECIFIED: TaskStatus
TASK_STATUS_OK: TaskStatus
TASK_STATUS_CHANGED: TaskStatus
TASK_STATUS_FAILED: TaskStatus
TASK_STATUS_SKIPPED: TaskStatus

class Gpu(_message.Message):
    __slots__ = ("index", "uuid", "name", "vendor", "memory_total_mb", "memory_used_mb", "compute_capability")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    UUID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VENDOR_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_MB_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USED_MB_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    index: int
    uuid: str
    name: str
    vendor: GpuVendor
    memory_total_mb: int
    memory_used_mb: int
    compute_capability: str
    def __init__(self, index: _Optional[int] = ..., uuid: _Optional[str] = ..., name: _Optional[str] = ..., vendor: _Optional[_Union[GpuVendor, str]] = ..., memory_total_mb: _Optional[int] = ..., memory_used_mb: _Optional[int] = ..., compute_capability: _Optional[str] = ...) -> None: ...

class Inventory(_message.Message):
    __slots__ = ("probe", "probe_error", "gpus")
    PROBE_FIELD_NUMBER: _ClassVar[int]
    PROBE_ERROR_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    probe: str
    probe_error: str
    gpus: _containers.RepeatedCompositeFieldContainer[Gpu]
    def __init__(self, probe: _Optional[str] = ..., probe_error: _Optional[str] = ..., gpus: _Optional[_Iterable[_Union[Gpu, _Mapping]]] = ...) -> None: ...
