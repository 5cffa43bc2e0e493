import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from gpufleet.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ServiceInfo(_message.Message):
    __slots__ = ("name", "vram_gb", "gpu_count", "latency_class", "model", "health_url", "drains", "model_ref")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VRAM_GB_FIELD_NUMBER: _ClassVar[int]
    GPU_COUNT_FIELD_NUMBER: _ClassVar[int]
    LATENCY_CLASS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    HEALTH_URL_FIELD_NUMBER: _ClassVar[int]
    DRAINS_FIELD_NUMBER: _ClassVar[int]
    MODEL_REF_FIELD_NUMBER: _ClassVar[int]
    name: str
    vram_gb: float
    gpu_count: int
    latency_class: str
    model: str
    health_url: str
    drains: bool
    model_ref: str
    def __init__(self, name: _Optional[str] = ..., vram_gb: _Optional[float] = ..., gpu_count: _Optional[int] = ..., latency_class: _Optional[str] = ..., model: _Optional[str] = ..., health_url: _Optional[str] = ..., drains: _Optional[bool] = ..., model_ref: _Optional[str] = ...) -> None: ...

class Configuration(_message.Message):
    __slots__ = ("name", "description", "use_case", "services", "digest")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    USE_CASE_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    use_case: str
    services: _containers.RepeatedCompositeFieldContainer[ServiceInfo]
    digest: str
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., use_case: _Optional[str] = ..., services: _Optional[_Iterable[_Union[ServiceInfo, _Mapping]]] = ..., digest: _Optional[str] = ...) -> None: ...

class ListConfigurationsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListConfigurationsResponse(_message.Message):
    __slots__ = ("configurations", "errors")
    CONFIGURATIONS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    configurations: _containers.RepeatedCompositeFieldContainer[Configuration]
    errors: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, configurations: _Optional[_Iterable[_Union[Configuration, _Mapping]]] = ..., errors: _Optional[_Iterable[str]] = ...) -> None: ...

class ValidateConfigurationRequest(_message.Message):
    __slots__ = ("filename", "content")
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    filename: str
    content: str
    def __init__(self, filename: _Optional[str] = ..., content: _Optional[str] = ...) -> None: ...

class ValidateConfigurationResponse(_message.Message):
    __slots__ = ("valid", "error", "configuration", "warnings")
    VALID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CONFIGURATION_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    valid: bool
    error: str
    configuration: Configuration
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, valid: _Optional[bool] = ..., error: _Optional[str] = ..., configuration: _Optional[_Union[Configuration, _Mapping]] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class NodeState(_message.Message):
    __slots__ = ("node", "status", "state", "configuration", "since", "message", "operation_id")
    NODE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CONFIGURATION_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    OPERATION_ID_FIELD_NUMBER: _ClassVar[int]
    node: str
    status: _types_pb2.NodeStatus
    state: str
    configuration: str
    since: _timestamp_pb2.Timestamp
    message: str
    operation_id: str
    def __init__(self, node: _Optional[str] = ..., status: _Optional[_Union[_types_pb2.NodeStatus, str]] = ..., state: _Optional[str] = ..., configuration: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., message: _Optional[str] = ..., operation_id: _Optional[str] = ...) -> None: ...

class GetStatusRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "selector", "names", "status", "state")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    selector: _containers.RepeatedScalarFieldContainer[str]
    names: _containers.RepeatedScalarFieldContainer[str]
    status: _containers.RepeatedScalarFieldContainer[str]
    state: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., selector: _Optional[_Iterable[str]] = ..., names: _Optional[_Iterable[str]] = ..., status: _Optional[_Iterable[str]] = ..., state: _Optional[_Iterable[str]] = ...) -> None: ...

class GetStatusResponse(_message.Message):
    __slots__ = ("nodes", "next_page_token", "store_error")
    NODES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STORE_ERROR_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[NodeState]
    next_page_token: str
    store_error: str
    def __init__(self, nodes: _Optional[_Iterable[_Union[NodeState, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., store_error: _Optional[str] = ...) -> None: ...

class Targets(_message.Message):
    __slots__ = ("nodes", "all", "selector")
    NODES_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedScalarFieldContainer[str]
    all: bool
    selector: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, nodes: _Optional[_Iterable[str]] = ..., all: _Optional[bool] = ..., selector: _Optional[_Iterable[str]] = ...) -> None: ...

class SwitchRequest(_message.Message):
    __slots__ = ("configuration", "targets", "serial", "max_fail_percent", "check", "no_rollback")
    CONFIGURATION_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    MAX_FAIL_PERCENT_FIELD_NUMBER: _ClassVar[int]
    CHECK_FIELD_NUMBER: _ClassVar[int]
    NO_ROLLBACK_FIELD_NUMBER: _ClassVar[int]
    configuration: str
    targets: Targets
    serial: int
    max_fail_percent: float
    check: bool
    no_rollback: bool
    def __init__(self, configuration: _Optional[str] = ..., targets: _Optional[_Union[Targets, _Mapping]] = ..., serial: _Optional[int] = ..., max_fail_percent: _Optional[float] = ..., check: _Optional[bool] = ..., no_rollback: _Optional[bool] = ...) -> None: ...

class DrainRequest(_message.Message):
    __slots__ = ("targets",)
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    targets: Targets
    def __init__(self, targets: _Optional[_Union[Targets, _Mapping]] = ...) -> None: ...

class StopRequest(_message.Message):
    __slots__ = ("targets", "serial")
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    targets: Targets
    serial: int
    def __init__(self, targets: _Optional[_Union[Targets, _Mapping]] = ..., serial: _Optional[int] = ...) -> None: ...

class OperationRef(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class NodeResult(_message.Message):
    __slots__ = ("node", "result", "message", "started", "finished", "progress_dropped", "warnings")
    NODE_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_DROPPED_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    node: str
    result: str
    message: str
    started: _timestamp_pb2.Timestamp
    finished: _timestamp_pb2.Timestamp
    progress_dropped: int
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, node: _Optional[str] = ..., result: _Optional[str] = ..., message: _Optional[str] = ..., started: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., progress_dropped: _Optional[int] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class Operation(_message.Message):
    __slots__ = ("id", "kind", "configuration", "status", "check", "created", "finished", "nodes", "message", "events")
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CONFIGURATION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CHECK_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    id: str
    kind: str
    configuration: str
    status: str
    check: bool
    created: _timestamp_pb2.Timestamp
    finished: _timestamp_pb2.Timestamp
    nodes: _containers.RepeatedCompositeFieldContainer[NodeResult]
    message: str
    events: _containers.RepeatedCompositeFieldContainer[OperationEvent]
    def __init__(self, id: _Optional[str] = ..., kind: _Optional[str] = ..., configuration: _Optional[str] = ..., status: _Optional[str] = ..., check: _Optional[bool] = ..., created: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., nodes: _Optional[_Iterable[_Union[NodeResult, _Mapping]]] = ..., message: _Optional[str] = ..., events: _Optional[_Iterable[_Union[OperationEvent, _Mapping]]] = ...) -> None: ...

class ListOperationsRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class ListOperationsResponse(_message.Message):
    __slots__ = ("operations", "store_error")
    OPERATIONS_FIELD_NUMBER: _ClassVar[int]
    STORE_ERROR_FIELD_NUMBER: _ClassVar[int]
    operations: _containers.RepeatedCompositeFieldContainer[Operation]
    store_error: str
    def __init__(self, operations: _Optional[_Iterable[_Union[Operation, _Mapping]]] = ..., store_error: _Optional[str] = ...) -> None: ...

class GetOperationRequest(_message.Message):
    __slots__ = ("id", "with_events")
    ID_FIELD_NUMBER: _ClassVar[int]
    WITH_EVENTS_FIELD_NUMBER: _ClassVar[int]
    id: str
    with_events: bool
    def __init__(self, id: _Optional[str] = ..., with_events: _Optional[bool] = ...) -> None: ...

class CancelOperationRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class WatchOperationRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class OperationEvent(_message.Message):
    __slots__ = ("seq", "at", "node", "step", "message", "operation", "progress", "percent")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    seq: int
    at: _timestamp_pb2.Timestamp
    node: str
    step: str
    message: str
    operation: Operation
    progress: bool
    percent: float
    def __init__(self, seq: _Optional[int] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., node: _Optional[str] = ..., step: _Optional[str] = ..., message: _Optional[str] = ..., operation: _Optional[_Union[Operation, _Mapping]] = ..., progress: _Optional[bool] = ..., percent: _Optional[float] = ...) -> None: ...

class Node(_message.Message):
    __slots__ = ("name", "status", "labels", "hostname", "address", "agent_version", "first_seen", "last_seen", "status_since", "gpu_count", "probe", "probe_error", "gpus", "events", "state", "configuration", "state_since", "state_message", "transitions", "preflight")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    STATUS_SINCE_FIELD_NUMBER: _ClassVar[int]
    GPU_COUNT_FIELD_NUMBER: _ClassVar[int]
    PROBE_FIELD_NUMBER: _ClassVar[int]
    PROBE_ERROR_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CONFIGURATION_FIELD_NUMBER: _ClassVar[int]
    STATE_SINCE_FIELD_NUMBER: _ClassVar[int]
    STATE_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TRANSITIONS_FIELD_NUMBER: _ClassVar[int]
    PREFLIGHT_FIELD_NUMBER: _ClassVar[int]
    name: str
    status: _types_pb2.NodeStatus
    labels: _containers.ScalarMap[str, str]
    hostname: str
    address: str
    agent_version: str
    first_seen: _timestamp_pb2.Timestamp
    last_seen: _timestamp_pb2.Timestamp
    status_since: _timestamp_pb2.Timestamp
    gpu_count: int
    probe: str
    probe_error: str
    gpus: _containers.RepeatedCompositeFieldContainer[_types_pb2.Gpu]
    events: _containers.RepeatedCompositeFieldContainer[NodeEvent]
    state: str
    configuration: str
    state_since: _timestamp_pb2.Timestamp
    state_message: str
    transitions: _containers.RepeatedCompositeFieldContainer[StateTransition]
    preflight: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., status: _Optional[_Union[_types_pb2.NodeStatus, str]] = ..., labels: _Optional[_Mapping[str, str]] = ..., hostname: _Optional[str] = ..., address: _Optional[str] = ..., agent_version: _Optional[str] = ..., first_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., status_since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., gpu_count: _Optional[int] = ..., probe: _Optional[str] = ..., probe_error: _Optional[str] = ..., gpus: _Optional[_Iterable[_Union[_types_pb2.Gpu, _Mapping]]] = ..., events: _Optional[_Iterable[_Union[NodeEvent, _Mapping]]] = ..., state: _Optional[str] = ..., configuration: _Optional[str] = ..., state_since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., state_message: _Optional[str] = ..., transitions: _Optional[_Iterable[_Union[StateTransition, _Mapping]]] = ..., preflight: _Optional[_Iterable[str]] = ...) -> None: ...

class StateTransition(_message.Message):
    __slots__ = ("at", "from_state", "to_state", "configuration", "operation_id", "message")
    AT_FIELD_NUMBER: _ClassVar[int]
    FROM_STATE_FIELD_NUMBER: _ClassVar[int]
    TO_STATE_FIELD_NUMBER: _ClassVar[int]
    CONFIGURATION_FIELD_NUMBER: _ClassVar[int]
    OPERATION_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    at: _timestamp_pb2.Timestamp
    from_state: str
    to_state: str
    configuration: str
    operation_id: str
    message: str
    def __init__(self, at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., from_state: _Optional[str] = ..., to_state: _Optional[str] = ..., configuration: _Optional[str] = ..., operation_id: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class NodeEvent(_message.Message):
    __slots__ = ("at", "kind", "message")
    AT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    at: _timestamp_pb2.Timestamp
    kind: str
    message: str
    def __init__(self, at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., kind: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class ListNodesRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "selector", "names", "status", "state")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    selector: _containers.RepeatedScalarFieldContainer[str]
    names: _containers.RepeatedScalarFieldContainer[str]
    status: _containers.RepeatedScalarFieldContainer[str]
    state: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., selector: _Optional[_Iterable[str]] = ..., names: _Optional[_Iterable[str]] = ..., status: _Optional[_Iterable[str]] = ..., state: _Optional[_Iterable[str]] = ...) -> None: ...

class ListNodesResponse(_message.Message):
    __slots__ = ("nodes", "next_page_token")
    NODES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[Node]
    next_page_token: str
    def __init__(self, nodes: _Optional[_Iterable[_Union[Node, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetNodeRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListGpusRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "selector", "names", "status", "gpu_state")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    GPU_STATE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    selector: _containers.RepeatedScalarFieldContainer[str]
    names: _containers.RepeatedScalarFieldContainer[str]
    status: _containers.RepeatedScalarFieldContainer[str]
    gpu_state: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., selector: _Optional[_Iterable[str]] = ..., names: _Optional[_Iterable[str]] = ..., status: _Optional[_Iterable[str]] = ..., gpu_state: _Optional[_Iterable[str]] = ...) -> None: ...

class NodeGpu(_message.Message):
    __slots__ = ("node", "node_status", "gpu")
    NODE_FIELD_NUMBER: _ClassVar[int]
    NODE_STATUS_FIELD_NUMBER: _ClassVar[int]
    GPU_FIELD_NUMBER: _ClassVar[int]
    node: str
    node_status: _types_pb2.NodeStatus
    gpu: _types_pb2.Gpu
    def __init__(self, node: _Optional[str] = ..., node_status: _Optional[_Union[_types_pb2.NodeStatus, str]] = ..., gpu: _Optional[_Union[_types_pb2.Gpu, _Mapping]] = ...) -> None: ...

class ListGpusResponse(_message.Message):
    __slots__ = ("gpus", "next_page_token")
    GPUS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    gpus: _containers.RepeatedCompositeFieldContainer[NodeGpu]
    next_page_token: str
    def __init__(self, gpus: _Optional[_Iterable[_Union[NodeGpu, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GpuUsageRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "selector", "names", "since", "raw")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    selector: _containers.RepeatedScalarFieldContainer[str]
    names: _containers.RepeatedScalarFieldContainer[str]
    since: _timestamp_pb2.Timestamp
    raw: bool
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., selector: _Optional[_Iterable[str]] = ..., names: _Optional[_Iterable[str]] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., raw: _Optional[bool] = ...) -> None: ...

class GpuUsage(_message.Message):
    __slots__ = ("node", "index", "start", "span_s", "samples", "utilization_avg", "utilization_max", "memory_used_avg_mb", "memory_used_max_mb", "temperature_max_c", "power_avg_w")
    NODE_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    SPAN_S_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    UTILIZATION_AVG_FIELD_NUMBER: _ClassVar[int]
    UTILIZATION_MAX_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USED_AVG_MB_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USED_MAX_MB_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_MAX_C_FIELD_NUMBER: _ClassVar[int]
    POWER_AVG_W_FIELD_NUMBER: _ClassVar[int]
    node: str
    index: int
    start: _timestamp_pb2.Timestamp
    span_s: int
    samples: int
    utilization_avg: float
    utilization_max: int
    memory_used_avg_mb: int
    memory_used_max_mb: int
    temperature_max_c: float
    power_avg_w: float
    def __init__(self, node: _Optional[str] = ..., index: _Optional[int] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., span_s: _Optional[int] = ..., samples: _Optional[int] = ..., utilization_avg: _Optional[float] = ..., utilization_max: _Optional[int] = ..., memory_used_avg_mb: _Optional[int] = ..., memory_used_max_mb: _Optional[int] = ..., temperature_max_c: _Optional[float] = ..., power_avg_w: _Optional[float] = ...) -> None: ...

class GpuUsageResponse(_message.Message):
    __slots__ = ("usage", "next_page_token", "raw_window_s", "keep_s")
    USAGE_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    RAW_WINDOW_S_FIELD_NUMBER: _ClassVar[int]
    KEEP_S_FIELD_NUMBER: _ClassVar[int]
    usage: _containers.RepeatedCompositeFieldContainer[GpuUsage]
    next_page_token: str
    raw_window_s: int
    keep_s: int
    def __init__(self, usage: _Optional[_Iterable[_Union[GpuUsage, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., raw_window_s: _Optional[int] = ..., keep_s: _Optional[int] = ...) -> None: ...
