import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from gpufleet.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WheelQuery(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: str
    def __init__(self, key: _Optional[str] = ...) -> None: ...

class WheelMeta(_message.Message):
    __slots__ = ("key", "filename", "size", "sha256", "parts", "built_on", "built_at")
    class PartsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    KEY_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    BUILT_ON_FIELD_NUMBER: _ClassVar[int]
    BUILT_AT_FIELD_NUMBER: _ClassVar[int]
    key: str
    filename: str
    size: int
    sha256: str
    parts: _containers.ScalarMap[str, str]
    built_on: str
    built_at: _timestamp_pb2.Timestamp
    def __init__(self, key: _Optional[str] = ..., filename: _Optional[str] = ..., size: _Optional[int] = ..., sha256: _Optional[str] = ..., parts: _Optional[_Mapping[str, str]] = ..., built_on: _Optional[str] = ..., built_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class WheelChunk(_message.Message):
    __slots__ = ("meta", "data")
    META_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    meta: WheelMeta
    data: bytes
    def __init__(self, meta: _Optional[_Union[WheelMeta, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class AgentMessage(_message.Message):
    __slots__ = ("hello", "heartbeat", "task_event", "task_result")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    TASK_EVENT_FIELD_NUMBER: _ClassVar[int]
    TASK_RESULT_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    heartbeat: Heartbeat
    task_event: TaskEvent
    task_result: TaskResult
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., task_event: _Optional[_Union[TaskEvent, _Mapping]] = ..., task_result: _Optional[_Union[TaskResult, _Mapping]] = ...) -> None: ...

class HubMessage(_message.Message):
    __slots__ = ("welcome", "task", "cancel", "goodbye", "pace")
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    GOODBYE_FIELD_NUMBER: _ClassVar[int]
    PACE_FIELD_NUMBER: _ClassVar[int]
    welcome: Welcome
    task: TaskRequest
    cancel: TaskCancel
    goodbye: Goodbye
    pace: Pace
    def __init__(self, welcome: _Optional[_Union[Welcome, _Mapping]] = ..., task: _Optional[_Union[TaskRequest, _Mapping]] = ..., cancel: _Optional[_Union[TaskCancel, _Mapping]] = ..., goodbye: _Optional[_Union[Goodbye, _Mapping]] = ..., pace: _Optional[_Union[Pace, _Mapping]] = ...) -> None: ...

class Pace(_message.Message):
    __slots__ = ("heartbeat_interval", "telemetry_interval")
    HEARTBEAT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    TELEMETRY_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    heartbeat_interval: _duration_pb2.Duration
    telemetry_interval: _duration_pb2.Duration
    def __init__(self, heartbeat_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., telemetry_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class Versions(_message.Message):
    __slots__ = ("agent", "python", "protocol")
    AGENT_FIELD_NUMBER: _ClassVar[int]
    PYTHON_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    agent: str
    python: str
    protocol: int
    def __init__(self, agent: _Optional[str] = ..., python: _Optional[str] = ..., protocol: _Optional[int] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("node_name", "agent_id", "labels", "versions", "hostname", "inventory", "projects", "projects_unknown", "envs", "llama_env_backends", "advertise_address", "caches")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    INVENTORY_FIELD_NUMBER: _ClassVar[int]
    PROJECTS_FIELD_NUMBER: _ClassVar[int]
    PROJECTS_UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    ENVS_FIELD_NUMBER: _ClassVar[int]
    LLAMA_ENV_BACKENDS_FIELD_NUMBER: _ClassVar[int]
    ADVERTISE_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CACHES_FIELD_NUMBER: _ClassVar[int]
    node_name: str
    agent_id: str
    labels: _containers.ScalarMap[str, str]
    versions: Versions
    hostname: str
    inventory: _types_pb2.Inventory
    projects: _containers.RepeatedCompositeFieldContainer[RunningProject]
    projects_unknown: bool
    envs: _containers.RepeatedCompositeFieldContainer[EnvInfo]
    llama_env_backends: _containers.RepeatedScalarFieldContainer[str]
    advertise_address: str
    caches: _containers.RepeatedCompositeFieldContainer[CachedEntry]
    def __init__(self, node_name: _Optional[str] = ..., agent_id: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., versions: _Optional[_Union[Versions, _Mapping]] = ..., hostname: _Optional[str] = ..., inventory: _Optional[_Union[_types_pb2.Inventory, _Mapping]] = ..., projects: _Optional[_Iterable[_Union[RunningProject, _Mapping]]] = ..., projects_unknown: _Optional[bool] = ..., envs: _Optional[_Iterable[_Union[EnvInfo, _Mapping]]] = ..., llama_env_backends: _Optional[_Iterable[str]] = ..., advertise_address: _Optional[str] = ..., caches: _Optional[_Iterable[_Union[CachedEntry, _Mapping]]] = ...) -> None: ...

class RunningProject(_message.Message):
    __slots__ = ("name", "digest", "services")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    name: str
    digest: str
    services: _containers.RepeatedCompositeFieldContainer[ServiceStatus]
    def __init__(self, name: _Optional[str] = ..., digest: _Optional[str] = ..., services: _Optional[_Iterable[_Union[ServiceStatus, _Mapping]]] = ...) -> None: ...

class ServiceStatus(_message.Message):
    __slots__ = ("name", "container_id", "state", "health", "health_message")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    HEALTH_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    name: str
    container_id: str
    state: str
    health: str
    health_message: str
    def __init__(self, name: _Optional[str] = ..., container_id: _Optional[str] = ..., state: _Optional[str] = ..., health: _Optional[str] = ..., health_message: _Optional[str] = ...) -> None: ...

class ProjectsReport(_message.Message):
    __slots__ = ("projects", "unknown")
    PROJECTS_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    projects: _containers.RepeatedCompositeFieldContainer[RunningProject]
    unknown: bool
    def __init__(self, projects: _Optional[_Iterable[_Union[RunningProject, _Mapping]]] = ..., unknown: _Optional[bool] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("node_name", "heartbeat_interval", "hub_version", "telemetry_interval")
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    HUB_VERSION_FIELD_NUMBER: _ClassVar[int]
    TELEMETRY_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    node_name: str
    heartbeat_interval: _duration_pb2.Duration
    hub_version: str
    telemetry_interval: _duration_pb2.Duration
    def __init__(self, node_name: _Optional[str] = ..., heartbeat_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., hub_version: _Optional[str] = ..., telemetry_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("seq", "sent_at", "gpus", "inventory", "projects", "envs", "caches", "telemetry_unchanged")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    INVENTORY_FIELD_NUMBER: _ClassVar[int]
    PROJECTS_FIELD_NUMBER: _ClassVar[int]
    ENVS_FIELD_NUMBER: _ClassVar[int]
    CACHES_FIELD_NUMBER: _ClassVar[int]
    TELEMETRY_UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    seq: int
    sent_at: _timestamp_pb2.Timestamp
    gpus: _containers.RepeatedCompositeFieldContainer[_types_pb2.GpuTelemetry]
    inventory: _types_pb2.Inventory
    projects: ProjectsReport
    envs: EnvsReport
    caches: CachesReport
    telemetry_unchanged: bool
    def __init__(self, seq: _Optional[int] = ..., sent_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., gpus: _Optional[_Iterable[_Union[_types_pb2.GpuTelemetry, _Mapping]]] = ..., inventory: _Optional[_Union[_types_pb2.Inventory, _Mapping]] = ..., projects: _Optional[_Union[ProjectsReport, _Mapping]] = ..., envs: _Optional[_Union[EnvsReport, _Mapping]] = ..., caches: _Optional[_Union[CachesReport, _Mapping]] = ..., telemetry_unchanged: _Optional[bool] = ...) -> None: ...

class CachesReport(_message.Message):
    __slots__ = ("caches",)
    CACHES_FIELD_NUMBER: _ClassVar[int]
    caches: _containers.RepeatedCompositeFieldContainer[CachedEntry]
    def __init__(self, caches: _Optional[_Iterable[_Union[CachedEntry, _Mapping]]] = ...) -> None: ...

class CachedEntry(_message.Message):
    __slots__ = ("entry", "revision", "size", "verified", "state", "path", "layout", "repo")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_FIELD_NUMBER: _ClassVar[int]
    REPO_FIELD_NUMBER: _ClassVar[int]
    entry: str
    revision: str
    size: int
    verified: bool
    state: str
    path: str
    layout: str
    repo: str
    def __init__(self, entry: _Optional[str] = ..., revision: _Optional[str] = ..., size: _Optional[int] = ..., verified: _Optional[bool] = ..., state: _Optional[str] = ..., path: _Optional[str] = ..., layout: _Optional[str] = ..., repo: _Optional[str] = ...) -> None: ...

class EnvsReport(_message.Message):
    __slots__ = ("envs",)
    ENVS_FIELD_NUMBER: _ClassVar[int]
    envs: _containers.RepeatedCompositeFieldContainer[EnvInfo]
    def __init__(self, envs: _Optional[_Iterable[_Union[EnvInfo, _Mapping]]] = ...) -> None: ...

class EnvInfo(_message.Message):
    __slots__ = ("name", "backend", "version", "state", "message", "gpu_offload", "devices", "size_bytes", "built_at", "origin", "key", "system_info", "projects")
    NAME_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    GPU_OFFLOAD_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    BUILT_AT_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_INFO_FIELD_NUMBER: _ClassVar[int]
    PROJECTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    backend: str
    version: str
    state: str
    message: str
    gpu_offload: bool
    devices: _containers.RepeatedScalarFieldContainer[str]
    size_bytes: int
    built_at: _timestamp_pb2.Timestamp
    origin: str
    key: str
    system_info: str
    projects: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., backend: _Optional[str] = ..., version: _Optional[str] = ..., state: _Optional[str] = ..., message: _Optional[str] = ..., gpu_offload: _Optional[bool] = ..., devices: _Optional[_Iterable[str]] = ..., size_bytes: _Optional[int] = ..., built_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., origin: _Optional[str] = ..., key: _Optional[str] = ..., system_info: _Optional[str] = ..., projects: _Optional[_Iterable[str]] = ...) -> None: ...

class Goodbye(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class TaskRequest(_message.Message):
    __slots__ = ("task_id", "check_mode", "gather_facts", "drain", "stop_project", "start_project", "wait_healthy", "apply_assignment", "tail_log", "build_env", "remove_env", "fetch_model", "remove_model_cache")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    CHECK_MODE_FIELD_NUMBER: _ClassVar[int]
    GATHER_FACTS_FIELD_NUMBER: _ClassVar[int]
    DRAIN_FIELD_NUMBER: _ClassVar[int]
    STOP_PROJECT_FIELD_NUMBER: _ClassVar[int]
    START_PROJECT_FIELD_NUMBER: _ClassVar[int]
    WAIT_HEALTHY_FIELD_NUMBER: _ClassVar[int]
    APPLY_ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    TAIL_LOG_FIELD_NUMBER: _ClassVar[int]
    BUILD_ENV_FIELD_NUMBER: _ClassVar[int]
    REMOVE_ENV_FIELD_NUMBER: _ClassVar[int]
    FETCH_MODEL_FIELD_NUMBER: _ClassVar[int]
    REMOVE_MODEL_CACHE_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    check_mode: bool
    gather_facts: GatherFacts
    drain: Drain
    stop_project: StopProject
    start_project: StartProject
    wait_healthy: WaitHealthy
    apply_assignment: ApplyAssignment
    tail_log: TailLog
    build_env: BuildEnv
    remove_env: RemoveEnv
    fetch_model: FetchModel
    remove_model_cache: RemoveModelCache
    def __init__(self, task_id: _Optional[str] = ..., check_mode: _Optional[bool] = ..., gather_facts: _Optional[_Union[GatherFacts, _Mapping]] = ..., drain: _Optional[_Union[Drain, _Mapping]] = ..., stop_project: _Optional[_Union[StopProject, _Mapping]] = ..., start_project: _Optional[_Union[StartProject, _Mapping]] = ..., wait_healthy: _Optional[_Union[WaitHealthy, _Mapping]] = ..., apply_assignment: _Optional[_Union[ApplyAssignment, _Mapping]] = ..., tail_log: _Optional[_Union[TailLog, _Mapping]] = ..., build_env: _Optional[_Union[BuildEnv, _Mapping]] = ..., remove_env: _Optional[_Union[RemoveEnv, _Mapping]] = ..., fetch_model: _Optional[_Union[FetchModel, _Mapping]] = ..., remove_model_cache: _Optional[_Union[RemoveModelCache, _Mapping]] = ...) -> None: ...

class FetchModel(_message.Message):
    __slots__ = ("entry", "revision", "layout", "repo", "chunk_size", "files")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_FIELD_NUMBER: _ClassVar[int]
    REPO_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    entry: str
    revision: str
    layout: str
    repo: str
    chunk_size: int
    files: _containers.RepeatedCompositeFieldContainer[FetchFile]
    def __init__(self, entry: _Optional[str] = ..., revision: _Optional[str] = ..., layout: _Optional[str] = ..., repo: _Optional[str] = ..., chunk_size: _Optional[int] = ..., files: _Optional[_Iterable[_Union[FetchFile, _Mapping]]] = ...) -> None: ...

class FetchFile(_message.Message):
    __slots__ = ("path", "size", "sha256", "chunks", "url")
    PATH_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    path: str
    size: int
    sha256: str
    chunks: _containers.RepeatedScalarFieldContainer[str]
    url: str
    def __init__(self, path: _Optional[str] = ..., size: _Optional[int] = ..., sha256: _Optional[str] = ..., chunks: _Optional[_Iterable[str]] = ..., url: _Optional[str] = ...) -> None: ...

class RemoveModelCache(_message.Message):
    __slots__ = ("entry",)
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    entry: str
    def __init__(self, entry: _Optional[str] = ...) -> None: ...

class BuildEnv(_message.Message):
    __slots__ = ("backend", "version", "extra_targets", "no_cache")
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    EXTRA_TARGETS_FIELD_NUMBER: _ClassVar[int]
    NO_CACHE_FIELD_NUMBER: _ClassVar[int]
    backend: str
    version: str
    extra_targets: _containers.RepeatedScalarFieldContainer[str]
    no_cache: bool
    def __init__(self, backend: _Optional[str] = ..., version: _Optional[str] = ..., extra_targets: _Optional[_Iterable[str]] = ..., no_cache: _Optional[bool] = ...) -> None: ...

class RemoveEnv(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GatherFacts(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Drain(_message.Message):
    __slots__ = ("project", "probes", "timeout")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    PROBES_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    project: str
    probes: _containers.RepeatedCompositeFieldContainer[DrainProbe]
    timeout: _duration_pb2.Duration
    def __init__(self, project: _Optional[str] = ..., probes: _Optional[_Iterable[_Union[DrainProbe, _Mapping]]] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class DrainProbe(_message.Message):
    __slots__ = ("service", "url", "metric")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    service: str
    url: str
    metric: str
    def __init__(self, service: _Optional[str] = ..., url: _Optional[str] = ..., metric: _Optional[str] = ...) -> None: ...

class StopProject(_message.Message):
    __slots__ = ("project",)
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    project: str
    def __init__(self, project: _Optional[str] = ...) -> None: ...

class StartProject(_message.Message):
    __slots__ = ("project", "compose", "digest", "process")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    COMPOSE_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    PROCESS_FIELD_NUMBER: _ClassVar[int]
    project: str
    compose: str
    digest: str
    process: HostProcess
    def __init__(self, project: _Optional[str] = ..., compose: _Optional[str] = ..., digest: _Optional[str] = ..., process: _Optional[_Union[HostProcess, _Mapping]] = ...) -> None: ...

class HostProcess(_message.Message):
    __slots__ = ("service", "environment", "args", "env", "health")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    service: str
    environment: str
    args: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.ScalarMap[str, str]
    health: HealthCheck
    def __init__(self, service: _Optional[str] = ..., environment: _Optional[str] = ..., args: _Optional[_Iterable[str]] = ..., env: _Optional[_Mapping[str, str]] = ..., health: _Optional[_Union[HealthCheck, _Mapping]] = ...) -> None: ...

class TailLog(_message.Message):
    __slots__ = ("project", "env", "lines")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    project: str
    env: str
    lines: int
    def __init__(self, project: _Optional[str] = ..., env: _Optional[str] = ..., lines: _Optional[int] = ...) -> None: ...

class WaitHealthy(_message.Message):
    __slots__ = ("project", "checks")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    CHECKS_FIELD_NUMBER: _ClassVar[int]
    project: str
    checks: _containers.RepeatedCompositeFieldContainer[HealthCheck]
    def __init__(self, project: _Optional[str] = ..., checks: _Optional[_Iterable[_Union[HealthCheck, _Mapping]]] = ...) -> None: ...

class HealthCheck(_message.Message):
    __slots__ = ("service", "url", "expect_status", "timeout", "interval", "expect_model")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    EXPECT_STATUS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    EXPECT_MODEL_FIELD_NUMBER: _ClassVar[int]
    service: str
    url: str
    expect_status: int
    timeout: _duration_pb2.Duration
    interval: _duration_pb2.Duration
    expect_model: str
    def __init__(self, service: _Optional[str] = ..., url: _Optional[str] = ..., expect_status: _Optional[int] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., expect_model: _Optional[str] = ...) -> None: ...

class ApplyAssignment(_message.Message):
    __slots__ = ("project", "services")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    project: str
    services: _containers.RepeatedCompositeFieldContainer[ServiceAssignment]
    def __init__(self, project: _Optional[str] = ..., services: _Optional[_Iterable[_Union[ServiceAssignment, _Mapping]]] = ...) -> None: ...

class ServiceAssignment(_message.Message):
    __slots__ = ("service", "here", "gpus", "vram_budget_gb")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    HERE_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    VRAM_BUDGET_GB_FIELD_NUMBER: _ClassVar[int]
    service: str
    here: bool
    gpus: _containers.RepeatedScalarFieldContainer[int]
    vram_budget_gb: float
    def __init__(self, service: _Optional[str] = ..., here: _Optional[bool] = ..., gpus: _Optional[_Iterable[int]] = ..., vram_budget_gb: _Optional[float] = ...) -> None: ...

class GpuFallback(_message.Message):
    __slots__ = ("service", "assigned", "used", "reason")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    ASSIGNED_FIELD_NUMBER: _ClassVar[int]
    USED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    service: str
    assigned: _containers.RepeatedScalarFieldContainer[int]
    used: _containers.RepeatedScalarFieldContainer[int]
    reason: str
    def __init__(self, service: _Optional[str] = ..., assigned: _Optional[_Iterable[int]] = ..., used: _Optional[_Iterable[int]] = ..., reason: _Optional[str] = ...) -> None: ...

class AssignmentReport(_message.Message):
    __slots__ = ("recreated", "removed", "fallbacks", "project")
    RECREATED_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    FALLBACKS_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    recreated: _containers.RepeatedScalarFieldContainer[str]
    removed: _containers.RepeatedScalarFieldContainer[str]
    fallbacks: _containers.RepeatedCompositeFieldContainer[GpuFallback]
    project: RunningProject
    def __init__(self, recreated: _Optional[_Iterable[str]] = ..., removed: _Optional[_Iterable[str]] = ..., fallbacks: _Optional[_Iterable[_Union[GpuFallback, _Mapping]]] = ..., project: _Optional[_Union[RunningProject, _Mapping]] = ...) -> None: ...

class TaskCancel(_message.Message):
    __slots__ = ("task_id",)
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    def __init__(self, task_id: _Optional[str] = ...) -> None: ...

class TaskEvent(_message.Message):
    __slots__ = ("task_id", "progress")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    progress: Progress
    def __init__(self, task_id: _Optional[str] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("phase", "percent", "message")
    PHASE_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    phase: str
    percent: float
    message: str
    def __init__(self, phase: _Optional[str] = ..., percent: _Optional[float] = ..., message: _Optional[str] = ...) -> None: ...

class TaskResult(_message.Message):
    __slots__ = ("task_id", "status", "message", "diff", "facts", "project", "assignment", "log", "env", "cache")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DIFF_FIELD_NUMBER: _ClassVar[int]
    FACTS_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    LOG_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    CACHE_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    status: _types_pb2.TaskStatus
    message: str
    diff: str
    facts: _types_pb2.Inventory
    project: RunningProject
    assignment: AssignmentReport
    log: str
    env: EnvInfo
    cache: CacheReport
    def __init__(self, task_id: _Optional[str] = ..., status: _Optional[_Union[_types_pb2.TaskStatus, str]] = ..., message: _Optional[str] = ..., diff: _Optional[str] = ..., facts: _Optional[_Union[_types_pb2.Inventory, _Mapping]] = ..., project: _Optional[_Union[RunningProject, _Mapping]] = ..., assignment: _Optional[_Union[AssignmentReport, _Mapping]] = ..., log: _Optional[str] = ..., env: _Optional[_Union[EnvInfo, _Mapping]] = ..., cache: _Optional[_Union[CacheReport, _Mapping]] = ...) -> None: ...

class CacheReport(_message.Message):
    __slots__ = ("entry", "fetched_bytes", "resumed_bytes", "refetched_chunks")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    FETCHED_BYTES_FIELD_NUMBER: _ClassVar[int]
    RESUMED_BYTES_FIELD_NUMBER: _ClassVar[int]
    REFETCHED_CHUNKS_FIELD_NUMBER: _ClassVar[int]
    entry: CachedEntry
    fetched_bytes: int
    resumed_bytes: int
    refetched_chunks: int
    def __init__(self, entry: _Optional[_Union[CachedEntry, _Mapping]] = ..., fetched_bytes: _Optional[int] = ..., resumed_bytes: _Optional[int] = ..., refetched_chunks: _Optional[int] = ...) -> None: ...
