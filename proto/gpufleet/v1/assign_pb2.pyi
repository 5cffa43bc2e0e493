import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from gpufleet.v1 import hub_pb2 as _hub_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Assignment(_message.Message):
    __slots__ = ("service", "node", "gpus", "vram_gb", "vram_budget_gb", "strategy")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    VRAM_GB_FIELD_NUMBER: _ClassVar[int]
    VRAM_BUDGET_GB_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    service: str
    node: str
    gpus: _containers.RepeatedScalarFieldContainer[int]
    vram_gb: float
    vram_budget_gb: float
    strategy: str
    def __init__(self, service: _Optional[str] = ..., node: _Optional[str] = ..., gpus: _Optional[_Iterable[int]] = ..., vram_gb: _Optional[float] = ..., vram_budget_gb: _Optional[float] = ..., strategy: _Optional[str] = ...) -> None: ...

class AssignedGpu(_message.Message):
    __slots__ = ("node", "index", "name", "memory_total_mb", "lost", "services", "reserved_gb")
    NODE_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_MB_FIELD_NUMBER: _ClassVar[int]
    LOST_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    RESERVED_GB_FIELD_NUMBER: _ClassVar[int]
    node: str
    index: int
    name: str
    memory_total_mb: int
    lost: bool
    services: _containers.RepeatedScalarFieldContainer[str]
    reserved_gb: float
    def __init__(self, node: _Optional[str] = ..., index: _Optional[int] = ..., name: _Optional[str] = ..., memory_total_mb: _Optional[int] = ..., lost: _Optional[bool] = ..., services: _Optional[_Iterable[str]] = ..., reserved_gb: _Optional[float] = ...) -> None: ...

class PlacementWarning(_message.Message):
    __slots__ = ("kind", "message", "service", "node", "gpu")
    KIND_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    GPU_FIELD_NUMBER: _ClassVar[int]
    kind: str
    message: str
    service: str
    node: str
    gpu: int
    def __init__(self, kind: _Optional[str] = ..., message: _Optional[str] = ..., service: _Optional[str] = ..., node: _Optional[str] = ..., gpu: _Optional[int] = ...) -> None: ...

class UnplacedService(_message.Message):
    __slots__ = ("service", "reason")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    service: str
    reason: str
    def __init__(self, service: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class AssignmentChange(_message.Message):
    __slots__ = ("service", "change", "before", "after")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    service: str
    change: str
    before: Assignment
    after: Assignment
    def __init__(self, service: _Optional[str] = ..., change: _Optional[str] = ..., before: _Optional[_Union[Assignment, _Mapping]] = ..., after: _Optional[_Union[Assignment, _Mapping]] = ...) -> None: ...

class PreviewAssignmentsRequest(_message.Message):
    __slots__ = ("configuration", "strategy", "nodes", "time_limit_s", "selector", "no_overcommit")
    CONFIGURATION_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    TIME_LIMIT_S_FIELD_NUMBER: _ClassVar[int]
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    NO_OVERCOMMIT_FIELD_NUMBER: _ClassVar[int]
    configuration: str
    strategy: str
    nodes: _containers.RepeatedScalarFieldContainer[str]
    time_limit_s: float
    selector: _containers.RepeatedScalarFieldContainer[str]
    no_overcommit: bool
    def __init__(self, configuration: _Optional[str] = ..., strategy: _Optional[str] = ..., nodes: _Optional[_Iterable[str]] = ..., time_limit_s: _Optional[float] = ..., selector: _Optional[_Iterable[str]] = ..., no_overcommit: _Optional[bool] = ...) -> None: ...

class PreviewAssignmentsResponse(_message.Message):
    __slots__ = ("configuration", "strategy", "assignments", "gpus", "warnings", "unplaced", "changes", "proved_optimal")
    CONFIGURATION_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENTS_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    UNPLACED_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    PROVED_OPTIMAL_FIELD_NUMBER: _ClassVar[int]
    configuration: str
    strategy: str
    assignments: _containers.RepeatedCompositeFieldContainer[Assignment]
    gpus: _containers.RepeatedCompositeFieldContainer[AssignedGpu]
    warnings: _containers.RepeatedCompositeFieldContainer[PlacementWarning]
    unplaced: _containers.RepeatedCompositeFieldContainer[UnplacedService]
    changes: _containers.RepeatedCompositeFieldContainer[AssignmentChange]
    proved_optimal: bool
    def __init__(self, configuration: _Optional[str] = ..., strategy: _Optional[str] = ..., assignments: _Optional[_Iterable[_Union[Assignment, _Mapping]]] = ..., gpus: _Optional[_Iterable[_Union[AssignedGpu, _Mapping]]] = ..., warnings: _Optional[_Iterable[_Union[PlacementWarning, _Mapping]]] = ..., unplaced: _Optional[_Iterable[_Union[UnplacedService, _Mapping]]] = ..., changes: _Optional[_Iterable[_Union[AssignmentChange, _Mapping]]] = ..., proved_optimal: _Optional[bool] = ...) -> None: ...

class SetAssignmentRequest(_message.Message):
    __slots__ = ("configuration", "service", "node", "gpus", "vram_budget_gb", "clear")
    CONFIGURATION_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    VRAM_BUDGET_GB_FIELD_NUMBER: _ClassVar[int]
    CLEAR_FIELD_NUMBER: _ClassVar[int]
    configuration: str
    service: str
    node: str
    gpus: _containers.RepeatedScalarFieldContainer[int]
    vram_budget_gb: float
    clear: bool
    def __init__(self, configuration: _Optional[str] = ..., service: _Optional[str] = ..., node: _Optional[str] = ..., gpus: _Optional[_Iterable[int]] = ..., vram_budget_gb: _Optional[float] = ..., clear: _Optional[bool] = ...) -> None: ...

class SetAssignmentResponse(_message.Message):
    __slots__ = ("configuration", "pin", "warnings", "cleared")
    CONFIGURATION_FIELD_NUMBER: _ClassVar[int]
    PIN_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    CLEARED_FIELD_NUMBER: _ClassVar[int]
    configuration: str
    pin: Assignment
    warnings: _containers.RepeatedCompositeFieldContainer[PlacementWarning]
    cleared: bool
    def __init__(self, configuration: _Optional[str] = ..., pin: _Optional[_Union[Assignment, _Mapping]] = ..., warnings: _Optional[_Iterable[_Union[PlacementWarning, _Mapping]]] = ..., cleared: _Optional[bool] = ...) -> None: ...

class ApplyAssignmentsRequest(_message.Message):
    __slots__ = ("configuration", "strategy", "nodes", "time_limit_s", "selector", "no_overcommit")
    CONFIGURATION_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    TIME_LIMIT_S_FIELD_NUMBER: _ClassVar[int]
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    NO_OVERCOMMIT_FIELD_NUMBER: _ClassVar[int]
    configuration: str
    strategy: str
    nodes: _containers.RepeatedScalarFieldContainer[str]
    time_limit_s: float
    selector: _containers.RepeatedScalarFieldContainer[str]
    no_overcommit: bool
    def __init__(self, configuration: _Optional[str] = ..., strategy: _Optional[str] = ..., nodes: _Optional[_Iterable[str]] = ..., time_limit_s: _Optional[float] = ..., selector: _Optional[_Iterable[str]] = ..., no_overcommit: _Optional[bool] = ...) -> None: ...

class ShowAssignmentsRequest(_message.Message):
    __slots__ = ("configuration",)
    CONFIGURATION_FIELD_NUMBER: _ClassVar[int]
    configuration: str
    def __init__(self, configuration: _Optional[str] = ...) -> None: ...

class AssignmentSet(_message.Message):
    __slots__ = ("configuration", "strategy", "applied", "current", "previous", "pins")
    CONFIGURATION_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    PINS_FIELD_NUMBER: _ClassVar[int]
    configuration: str
    strategy: str
    applied: _timestamp_pb2.Timestamp
    current: _containers.RepeatedCompositeFieldContainer[Assignment]
    previous: _containers.RepeatedCompositeFieldContainer[Assignment]
    pins: _containers.RepeatedCompositeFieldContainer[Assignment]
    def __init__(self, configuration: _Optional[str] = ..., strategy: _Optional[str] = ..., applied: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., current: _Optional[_Iterable[_Union[Assignment, _Mapping]]] = ..., previous: _Optional[_Iterable[_Union[Assignment, _Mapping]]] = ..., pins: _Optional[_Iterable[_Union[Assignment, _Mapping]]] = ...) -> None: ...

class ShowAssignmentsResponse(_message.Message):
    __slots__ = ("sets",)
    SETS_FIELD_NUMBER: _ClassVar[int]
    sets: _containers.RepeatedCompositeFieldContainer[AssignmentSet]
    def __init__(self, sets: _Optional[_Iterable[_Union[AssignmentSet, _Mapping]]] = ...) -> None: ...

class RollbackAssignmentsRequest(_message.Message):
    __slots__ = ("configuration",)
    CONFIGURATION_FIELD_NUMBER: _ClassVar[int]
    configuration: str
    def __init__(self, configuration: _Optional[str] = ...) -> None: ...
