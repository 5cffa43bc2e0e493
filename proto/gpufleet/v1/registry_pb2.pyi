import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from gpufleet.v1 import hub_pb2 as _hub_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RegistryFile(_message.Message):
    __slots__ = ("path", "size", "sha256", "chunks")
    PATH_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    path: str
    size: int
    sha256: str
    chunks: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, path: _Optional[str] = ..., size: _Optional[int] = ..., sha256: _Optional[str] = ..., chunks: _Optional[_Iterable[str]] = ...) -> None: ...

class RegistryEntry(_message.Message):
    __slots__ = ("name", "source", "revision", "files", "size", "pulled", "state", "message", "chunk_size", "layout", "repo")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    PULLED_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_FIELD_NUMBER: _ClassVar[int]
    REPO_FIELD_NUMBER: _ClassVar[int]
    name: str
    source: str
    revision: str
    files: int
    size: int
    pulled: _timestamp_pb2.Timestamp
    state: str
    message: str
    chunk_size: int
    layout: str
    repo: str
    def __init__(self, name: _Optional[str] = ..., source: _Optional[str] = ..., revision: _Optional[str] = ..., files: _Optional[int] = ..., size: _Optional[int] = ..., pulled: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., state: _Optional[str] = ..., message: _Optional[str] = ..., chunk_size: _Optional[int] = ..., layout: _Optional[str] = ..., repo: _Optional[str] = ...) -> None: ...

class ListEntriesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListEntriesResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[RegistryEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[RegistryEntry, _Mapping]]] = ...) -> None: ...

class GetEntryRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetEntryResponse(_message.Message):
    __slots__ = ("entry", "files", "models", "caches")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    CACHES_FIELD_NUMBER: _ClassVar[int]
    entry: RegistryEntry
    files: _containers.RepeatedCompositeFieldContainer[RegistryFile]
    models: _containers.RepeatedScalarFieldContainer[str]
    caches: _containers.RepeatedCompositeFieldContainer[NodeCache]
    def __init__(self, entry: _Optional[_Union[RegistryEntry, _Mapping]] = ..., files: _Optional[_Iterable[_Union[RegistryFile, _Mapping]]] = ..., models: _Optional[_Iterable[str]] = ..., caches: _Optional[_Iterable[_Union[NodeCache, _Mapping]]] = ...) -> None: ...

class PullRequest(_message.Message):
    __slots__ = ("name", "hf_repo", "revision", "include")
    NAME_FIELD_NUMBER: _ClassVar[int]
    HF_REPO_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_FIELD_NUMBER: _ClassVar[int]
    name: str
    hf_repo: str
    revision: str
    include: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., hf_repo: _Optional[str] = ..., revision: _Optional[str] = ..., include: _Optional[_Iterable[str]] = ...) -> None: ...

class PullResponse(_message.Message):
    __slots__ = ("operation_id", "joined")
    OPERATION_ID_FIELD_NUMBER: _ClassVar[int]
    JOINED_FIELD_NUMBER: _ClassVar[int]
    operation_id: str
    joined: bool
    def __init__(self, operation_id: _Optional[str] = ..., joined: _Optional[bool] = ...) -> None: ...

class ImportFileInfo(_message.Message):
    __slots__ = ("path", "size", "sha256")
    PATH_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    path: str
    size: int
    sha256: str
    def __init__(self, path: _Optional[str] = ..., size: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class ImportStart(_message.Message):
    __slots__ = ("name", "layout", "repo", "files")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_FIELD_NUMBER: _ClassVar[int]
    REPO_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    name: str
    layout: str
    repo: str
    files: _containers.RepeatedCompositeFieldContainer[ImportFileInfo]
    def __init__(self, name: _Optional[str] = ..., layout: _Optional[str] = ..., repo: _Optional[str] = ..., files: _Optional[_Iterable[_Union[ImportFileInfo, _Mapping]]] = ...) -> None: ...

class ImportData(_message.Message):
    __slots__ = ("path", "data")
    PATH_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    path: str
    data: bytes
    def __init__(self, path: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class ImportChunk(_message.Message):
    __slots__ = ("start", "data")
    START_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    start: ImportStart
    data: ImportData
    def __init__(self, start: _Optional[_Union[ImportStart, _Mapping]] = ..., data: _Optional[_Union[ImportData, _Mapping]] = ...) -> None: ...

class ImportResponse(_message.Message):
    __slots__ = ("entry",)
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    entry: RegistryEntry
    def __init__(self, entry: _Optional[_Union[RegistryEntry, _Mapping]] = ...) -> None: ...

class RemoveEntryRequest(_message.Message):
    __slots__ = ("name", "force")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    force: bool
    def __init__(self, name: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class RemoveEntryResponse(_message.Message):
    __slots__ = ("entry", "warnings")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    entry: RegistryEntry
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, entry: _Optional[_Union[RegistryEntry, _Mapping]] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class CacheModelRequest(_message.Message):
    __slots__ = ("name", "targets")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    name: str
    targets: _hub_pb2.Targets
    def __init__(self, name: _Optional[str] = ..., targets: _Optional[_Union[_hub_pb2.Targets, _Mapping]] = ...) -> None: ...

class UncacheModelRequest(_message.Message):
    __slots__ = ("name", "targets")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    name: str
    targets: _hub_pb2.Targets
    def __init__(self, name: _Optional[str] = ..., targets: _Optional[_Union[_hub_pb2.Targets, _Mapping]] = ...) -> None: ...

class NodeCache(_message.Message):
    __slots__ = ("node", "entry", "revision", "size", "verified", "state", "path", "connected")
    NODE_FIELD_NUMBER: _ClassVar[int]
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    node: str
    entry: str
    revision: str
    size: int
    verified: bool
    state: str
    path: str
    connected: bool
    def __init__(self, node: _Optional[str] = ..., entry: _Optional[str] = ..., revision: _Optional[str] = ..., size: _Optional[int] = ..., verified: _Optional[bool] = ..., state: _Optional[str] = ..., path: _Optional[str] = ..., connected: _Optional[bool] = ...) -> None: ...

class ListCachesRequest(_message.Message):
    __slots__ = ("name", "selector")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    name: str
    selector: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., selector: _Optional[_Iterable[str]] = ...) -> None: ...

class ListCachesResponse(_message.Message):
    __slots__ = ("caches",)
    CACHES_FIELD_NUMBER: _ClassVar[int]
    caches: _containers.RepeatedCompositeFieldContainer[NodeCache]
    def __init__(self, caches: _Optional[_Iterable[_Union[NodeCache, _Mapping]]] = ...) -> None: ...

class DownloadRequest(_message.Message):
    __slots__ = ("entry", "revision", "path", "offset", "length")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    entry: str
    revision: str
    path: str
    offset: int
    length: int
    def __init__(self, entry: _Optional[str] = ..., revision: _Optional[str] = ..., path: _Optional[str] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ...) -> None: ...

class DownloadChunk(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...
