from gpufleet.v1 import agent_link_pb2 as _agent_link_pb2
from gpufleet.v1 import hub_pb2 as _hub_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NodeEnv(_message.Message):
    __slots__ = ("node", "env", "models", "connected")
    NODE_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    node: str
    env: _agent_link_pb2.EnvInfo
    models: _containers.RepeatedScalarFieldContainer[str]
    connected: bool
    def __init__(self, node: _Optional[str] = ..., env: _Optional[_Union[_agent_link_pb2.EnvInfo, _Mapping]] = ..., models: _Optional[_Iterable[str]] = ..., connected: _Optional[bool] = ...) -> None: ...

class ListEnvsRequest(_message.Message):
    __slots__ = ("nodes", "selector", "backend")
    NODES_FIELD_NUMBER: _ClassVar[int]
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedScalarFieldContainer[str]
    selector: _containers.RepeatedScalarFieldContainer[str]
    backend: str
    def __init__(self, nodes: _Optional[_Iterable[str]] = ..., selector: _Optional[_Iterable[str]] = ..., backend: _Optional[str] = ...) -> None: ...

class ListEnvsResponse(_message.Message):
    __slots__ = ("envs",)
    ENVS_FIELD_NUMBER: _ClassVar[int]
    envs: _containers.RepeatedCompositeFieldContainer[NodeEnv]
    def __init__(self, envs: _Optional[_Iterable[_Union[NodeEnv, _Mapping]]] = ...) -> None: ...

class BuildEnvRequest(_message.Message):
    __slots__ = ("backend", "version", "targets", "extra_targets", "no_cache", "check")
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    EXTRA_TARGETS_FIELD_NUMBER: _ClassVar[int]
    NO_CACHE_FIELD_NUMBER: _ClassVar[int]
    CHECK_FIELD_NUMBER: _ClassVar[int]
    backend: str
    version: str
    targets: _hub_pb2.Targets
    extra_targets: _containers.RepeatedScalarFieldContainer[str]
    no_cache: bool
    check: bool
    def __init__(self, backend: _Optional[str] = ..., version: _Optional[str] = ..., targets: _Optional[_Union[_hub_pb2.Targets, _Mapping]] = ..., extra_targets: _Optional[_Iterable[str]] = ..., no_cache: _Optional[bool] = ..., check: _Optional[bool] = ...) -> None: ...

class RemoveEnvRequest(_message.Message):
    __slots__ = ("name", "targets")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    name: str
    targets: _hub_pb2.Targets
    def __init__(self, name: _Optional[str] = ..., targets: _Optional[_Union[_hub_pb2.Targets, _Mapping]] = ...) -> None: ...

class RemovedEnv(_message.Message):
    __slots__ = ("node", "name", "message", "ok")
    NODE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    node: str
    name: str
    message: str
    ok: bool
    def __init__(self, node: _Optional[str] = ..., name: _Optional[str] = ..., message: _Optional[str] = ..., ok: _Optional[bool] = ...) -> None: ...

class RemoveEnvResponse(_message.Message):
    __slots__ = ("removed",)
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    removed: _containers.RepeatedCompositeFieldContainer[RemovedEnv]
    def __init__(self, removed: _Optional[_Iterable[_Union[RemovedEnv, _Mapping]]] = ...) -> None: ...

class EnvLogsRequest(_message.Message):
    __slots__ = ("name", "node", "lines")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    name: str
    node: str
    lines: int
    def __init__(self, name: _Optional[str] = ..., node: _Optional[str] = ..., lines: _Optional[int] = ...) -> None: ...

class EnvLogsResponse(_message.Message):
    __slots__ = ("node", "name", "log")
    NODE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    LOG_FIELD_NUMBER: _ClassVar[int]
    node: str
    name: str
    log: str
    def __init__(self, node: _Optional[str] = ..., name: _Optional[str] = ..., log: _Optional[str] = ...) -> None: ...

class CachedWheel(_message.Message):
    __slots__ = ("meta", "nodes")
    META_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    meta: _agent_link_pb2.WheelMeta
    nodes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, meta: _Optional[_Union[_agent_link_pb2.WheelMeta, _Mapping]] = ..., nodes: _Optional[_Iterable[str]] = ...) -> None: ...

class ListWheelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListWheelsResponse(_message.Message):
    __slots__ = ("wheels", "total_bytes")
    WHEELS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    wheels: _containers.RepeatedCompositeFieldContainer[CachedWheel]
    total_bytes: int
    def __init__(self, wheels: _Optional[_Iterable[_Union[CachedWheel, _Mapping]]] = ..., total_bytes: _Optional[int] = ...) -> None: ...

class RemoveWheelRequest(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: str
    def __init__(self, key: _Optional[str] = ...) -> None: ...

class RemoveWheelResponse(_message.Message):
    __slots__ = ("removed",)
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    removed: _agent_link_pb2.WheelMeta
    def __init__(self, removed: _Optional[_Union[_agent_link_pb2.WheelMeta, _Mapping]] = ...) -> None: ...
