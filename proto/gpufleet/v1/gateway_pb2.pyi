import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from gpufleet.v1 import hub_pb2 as _hub_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WatchRoutesRequest(_message.Message):
    __slots__ = ("gateway",)
    GATEWAY_FIELD_NUMBER: _ClassVar[int]
    gateway: str
    def __init__(self, gateway: _Optional[str] = ...) -> None: ...

class RouteTable(_message.Message):
    __slots__ = ("generation", "models", "replicas", "keys", "errors")
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    generation: int
    models: _containers.RepeatedCompositeFieldContainer[RouteModel]
    replicas: _containers.RepeatedCompositeFieldContainer[Replica]
    keys: _containers.RepeatedCompositeFieldContainer[ApiKeyHash]
    errors: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, generation: _Optional[int] = ..., models: _Optional[_Iterable[_Union[RouteModel, _Mapping]]] = ..., replicas: _Optional[_Iterable[_Union[Replica, _Mapping]]] = ..., keys: _Optional[_Iterable[_Union[ApiKeyHash, _Mapping]]] = ..., errors: _Optional[_Iterable[str]] = ...) -> None: ...

class RouteModel(_message.Message):
    __slots__ = ("name", "aliases", "served_model_name", "engine", "state", "message", "load_timeout_s", "idle_ttl_s", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    SERVED_MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    LOAD_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    IDLE_TTL_S_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    aliases: _containers.RepeatedScalarFieldContainer[str]
    served_model_name: str
    engine: str
    state: str
    message: str
    load_timeout_s: float
    idle_ttl_s: float
    description: str
    def __init__(self, name: _Optional[str] = ..., aliases: _Optional[_Iterable[str]] = ..., served_model_name: _Optional[str] = ..., engine: _Optional[str] = ..., state: _Optional[str] = ..., message: _Optional[str] = ..., load_timeout_s: _Optional[float] = ..., idle_ttl_s: _Optional[float] = ..., description: _Optional[str] = ...) -> None: ...

class Replica(_message.Message):
    __slots__ = ("model", "node", "endpoint", "healthy", "state", "message", "in_flight")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    model: str
    node: str
    endpoint: str
    healthy: bool
    state: str
    message: str
    in_flight: int
    def __init__(self, model: _Optional[str] = ..., node: _Optional[str] = ..., endpoint: _Optional[str] = ..., healthy: _Optional[bool] = ..., state: _Optional[str] = ..., message: _Optional[str] = ..., in_flight: _Optional[int] = ...) -> None: ...

class ApiKeyHash(_message.Message):
    __slots__ = ("name", "sha256", "models")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    name: str
    sha256: str
    models: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., sha256: _Optional[str] = ..., models: _Optional[_Iterable[str]] = ...) -> None: ...

class EnsureModelRequest(_message.Message):
    __slots__ = ("name", "gateway")
    NAME_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_FIELD_NUMBER: _ClassVar[int]
    name: str
    gateway: str
    def __init__(self, name: _Optional[str] = ..., gateway: _Optional[str] = ...) -> None: ...

class EnsureModelResponse(_message.Message):
    __slots__ = ("state", "operation_id", "nodes", "message")
    STATE_FIELD_NUMBER: _ClassVar[int]
    OPERATION_ID_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    state: str
    operation_id: str
    nodes: _containers.RepeatedScalarFieldContainer[str]
    message: str
    def __init__(self, state: _Optional[str] = ..., operation_id: _Optional[str] = ..., nodes: _Optional[_Iterable[str]] = ..., message: _Optional[str] = ...) -> None: ...

class ModelActivity(_message.Message):
    __slots__ = ("model", "in_flight", "last_finished", "requests", "replicas")
    class ReplicasEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    LAST_FINISHED_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    model: str
    in_flight: int
    last_finished: _timestamp_pb2.Timestamp
    requests: int
    replicas: _containers.ScalarMap[str, int]
    def __init__(self, model: _Optional[str] = ..., in_flight: _Optional[int] = ..., last_finished: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., requests: _Optional[int] = ..., replicas: _Optional[_Mapping[str, int]] = ...) -> None: ...

class ActivityReport(_message.Message):
    __slots__ = ("gateway", "models")
    GATEWAY_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    gateway: str
    models: _containers.RepeatedCompositeFieldContainer[ModelActivity]
    def __init__(self, gateway: _Optional[str] = ..., models: _Optional[_Iterable[_Union[ModelActivity, _Mapping]]] = ...) -> None: ...

class ActivityAck(_message.Message):
    __slots__ = ("interval_s",)
    INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    interval_s: float
    def __init__(self, interval_s: _Optional[float] = ...) -> None: ...

class GpuStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ApiKey(_message.Message):
    __slots__ = ("name", "prefix", "models", "created", "created_by", "revoked")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    name: str
    prefix: str
    models: _containers.RepeatedScalarFieldContainer[str]
    created: _timestamp_pb2.Timestamp
    created_by: str
    revoked: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., prefix: _Optional[str] = ..., models: _Optional[_Iterable[str]] = ..., created: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_by: _Optional[str] = ..., revoked: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateKeyRequest(_message.Message):
    __slots__ = ("name", "models")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    name: str
    models: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., models: _Optional[_Iterable[str]] = ...) -> None: ...

class CreateKeyResponse(_message.Message):
    __slots__ = ("key", "secret")
    KEY_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    key: ApiKey
    secret: str
    def __init__(self, key: _Optional[_Union[ApiKey, _Mapping]] = ..., secret: _Optional[str] = ...) -> None: ...

class ListKeysRequest(_message.Message):
    __slots__ = ("all",)
    ALL_FIELD_NUMBER: _ClassVar[int]
    all: bool
    def __init__(self, all: _Optional[bool] = ...) -> None: ...

class ListKeysResponse(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[ApiKey]
    def __init__(self, keys: _Optional[_Iterable[_Union[ApiKey, _Mapping]]] = ...) -> None: ...

class RevokeKeyRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class RevokeKeyResponse(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: ApiKey
    def __init__(self, key: _Optional[_Union[ApiKey, _Mapping]] = ...) -> None: ...
