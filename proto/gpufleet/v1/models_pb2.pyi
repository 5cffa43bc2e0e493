import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from gpufleet.v1 import hub_pb2 as _hub_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class VramEstimate(_message.Message):
    __slots__ = ("gb", "basis")
    GB_FIELD_NUMBER: _ClassVar[int]
    BASIS_FIELD_NUMBER: _ClassVar[int]
    gb: float
    basis: str
    def __init__(self, gb: _Optional[float] = ..., basis: _Optional[str] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "aliases", "engine", "source", "served_model_name", "max_context", "vram", "description", "digest", "file", "gpus_needed", "running_on", "environment", "backend_switched", "cached_on")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SERVED_MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MAX_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    VRAM_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    GPUS_NEEDED_FIELD_NUMBER: _ClassVar[int]
    RUNNING_ON_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    BACKEND_SWITCHED_FIELD_NUMBER: _ClassVar[int]
    CACHED_ON_FIELD_NUMBER: _ClassVar[int]
    name: str
    aliases: _containers.RepeatedScalarFieldContainer[str]
    engine: str
    source: str
    served_model_name: str
    max_context: int
    vram: VramEstimate
    description: str
    digest: str
    file: str
    gpus_needed: int
    running_on: _containers.RepeatedScalarFieldContainer[str]
    environment: str
    backend_switched: bool
    cached_on: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., aliases: _Optional[_Iterable[str]] = ..., engine: _Optional[str] = ..., source: _Optional[str] = ..., served_model_name: _Optional[str] = ..., max_context: _Optional[int] = ..., vram: _Optional[_Union[VramEstimate, _Mapping]] = ..., description: _Optional[str] = ..., digest: _Optional[str] = ..., file: _Optional[str] = ..., gpus_needed: _Optional[int] = ..., running_on: _Optional[_Iterable[str]] = ..., environment: _Optional[str] = ..., backend_switched: _Optional[bool] = ..., cached_on: _Optional[_Iterable[str]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models", "errors")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    errors: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ..., errors: _Optional[_Iterable[str]] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetModelResponse(_message.Message):
    __slots__ = ("model", "yaml", "deployment", "command", "argv", "env", "command_error")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    YAML_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    ARGV_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    COMMAND_ERROR_FIELD_NUMBER: _ClassVar[int]
    model: ModelInfo
    yaml: str
    deployment: str
    command: str
    argv: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.ScalarMap[str, str]
    command_error: str
    def __init__(self, model: _Optional[_Union[ModelInfo, _Mapping]] = ..., yaml: _Optional[str] = ..., deployment: _Optional[str] = ..., command: _Optional[str] = ..., argv: _Optional[_Iterable[str]] = ..., env: _Optional[_Mapping[str, str]] = ..., command_error: _Optional[str] = ...) -> None: ...

class ValidateModelRequest(_message.Message):
    __slots__ = ("filename", "content")
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    filename: str
    content: str
    def __init__(self, filename: _Optional[str] = ..., content: _Optional[str] = ...) -> None: ...

class ValidatedModel(_message.Message):
    __slots__ = ("model", "yaml", "vllm_model_yaml", "vllm_model_error")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    YAML_FIELD_NUMBER: _ClassVar[int]
    VLLM_MODEL_YAML_FIELD_NUMBER: _ClassVar[int]
    VLLM_MODEL_ERROR_FIELD_NUMBER: _ClassVar[int]
    model: ModelInfo
    yaml: str
    vllm_model_yaml: str
    vllm_model_error: str
    def __init__(self, model: _Optional[_Union[ModelInfo, _Mapping]] = ..., yaml: _Optional[str] = ..., vllm_model_yaml: _Optional[str] = ..., vllm_model_error: _Optional[str] = ...) -> None: ...

class ValidateModelResponse(_message.Message):
    __slots__ = ("valid", "problems", "models")
    VALID_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    valid: bool
    problems: _containers.RepeatedScalarFieldContainer[str]
    models: _containers.RepeatedCompositeFieldContainer[ValidatedModel]
    def __init__(self, valid: _Optional[bool] = ..., problems: _Optional[_Iterable[str]] = ..., models: _Optional[_Iterable[_Union[ValidatedModel, _Mapping]]] = ...) -> None: ...

class SwitchModelRequest(_message.Message):
    __slots__ = ("name", "targets", "gpus", "gpu_count", "port", "serial", "max_fail_percent", "check", "no_rollback", "force", "no_fetch")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    GPU_COUNT_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    MAX_FAIL_PERCENT_FIELD_NUMBER: _ClassVar[int]
    CHECK_FIELD_NUMBER: _ClassVar[int]
    NO_ROLLBACK_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    NO_FETCH_FIELD_NUMBER: _ClassVar[int]
    name: str
    targets: _hub_pb2.Targets
    gpus: _containers.RepeatedScalarFieldContainer[int]
    gpu_count: int
    port: int
    serial: int
    max_fail_percent: float
    check: bool
    no_rollback: bool
    force: bool
    no_fetch: bool
    def __init__(self, name: _Optional[str] = ..., targets: _Optional[_Union[_hub_pb2.Targets, _Mapping]] = ..., gpus: _Optional[_Iterable[int]] = ..., gpu_count: _Optional[int] = ..., port: _Optional[int] = ..., serial: _Optional[int] = ..., max_fail_percent: _Optional[float] = ..., check: _Optional[bool] = ..., no_rollback: _Optional[bool] = ..., force: _Optional[bool] = ..., no_fetch: _Optional[bool] = ...) -> None: ...

class StopModelRequest(_message.Message):
    __slots__ = ("name", "targets")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    name: str
    targets: _hub_pb2.Targets
    def __init__(self, name: _Optional[str] = ..., targets: _Optional[_Union[_hub_pb2.Targets, _Mapping]] = ...) -> None: ...

class RunningModel(_message.Message):
    __slots__ = ("node", "model", "engine", "gpus", "state", "since", "endpoint", "message", "project")
    NODE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    node: str
    model: str
    engine: str
    gpus: _containers.RepeatedScalarFieldContainer[int]
    state: str
    since: _timestamp_pb2.Timestamp
    endpoint: str
    message: str
    project: str
    def __init__(self, node: _Optional[str] = ..., model: _Optional[str] = ..., engine: _Optional[str] = ..., gpus: _Optional[_Iterable[int]] = ..., state: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., endpoint: _Optional[str] = ..., message: _Optional[str] = ..., project: _Optional[str] = ...) -> None: ...

class ListRunningRequest(_message.Message):
    __slots__ = ("name", "selector")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    name: str
    selector: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., selector: _Optional[_Iterable[str]] = ...) -> None: ...

class ListRunningResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[RunningModel]
    def __init__(self, models: _Optional[_Iterable[_Union[RunningModel, _Mapping]]] = ...) -> None: ...

class ModelLogsRequest(_message.Message):
    __slots__ = ("name", "node", "lines")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    name: str
    node: str
    lines: int
    def __init__(self, name: _Optional[str] = ..., node: _Optional[str] = ..., lines: _Optional[int] = ...) -> None: ...

class ModelLogsResponse(_message.Message):
    __slots__ = ("node", "project", "log")
    NODE_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    LOG_FIELD_NUMBER: _ClassVar[int]
    node: str
    project: str
    log: str
    def __init__(self, node: _Optional[str] = ..., project: _Optional[str] = ..., log: _Optional[str] = ...) -> None: ...

class SwitchBackendRequest(_message.Message):
    __slots__ = ("name", "backend", "version", "targets", "no_restart", "force")
    NAME_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    NO_RESTART_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    backend: str
    version: str
    targets: _hub_pb2.Targets
    no_restart: bool
    force: bool
    def __init__(self, name: _Optional[str] = ..., backend: _Optional[str] = ..., version: _Optional[str] = ..., targets: _Optional[_Union[_hub_pb2.Targets, _Mapping]] = ..., no_restart: _Optional[bool] = ..., force: _Optional[bool] = ...) -> None: ...

class SwitchBackendResponse(_message.Message):
    __slots__ = ("instant_switch", "environment", "operation_id", "nodes", "builds")
    INSTANT_SWITCH_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    OPERATION_ID_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    BUILDS_FIELD_NUMBER: _ClassVar[int]
    instant_switch: bool
    environment: str
    operation_id: str
    nodes: _containers.RepeatedScalarFieldContainer[str]
    builds: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, instant_switch: _Optional[bool] = ..., environment: _Optional[str] = ..., operation_id: _Optional[str] = ..., nodes: _Optional[_Iterable[str]] = ..., builds: _Optional[_Iterable[str]] = ...) -> None: ...
