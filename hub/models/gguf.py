"""A GGUF file's header, read from a byte stream: metadata and tensor infos, not the weights.

The format (ggml's docs/gguf.md, versions 2 and 3, little-endian): "GGUF", version (u32),
tensor count and metadata count (u64), the metadata (key string, value type u32, value), then
per tensor its name, dimension count (u32), dimensions (u64 each), ggml type (u32) and offset
(u64). Strings are a u64 length and UTF-8 bytes. The file is hostile input: each count and
length is bounded, and no more than `limit` bytes are read; anything else is GgufError, one
line. Tensor sizes use ggml's block layouts (gguf-py's GGML_QUANT_SIZES, as of gguf 0.19).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, BinaryIO

MAGIC = b"GGUF"
MAX_HEADER = 256 * 1024 * 1024  # bytes read at most: a 256k-token vocabulary takes ~10 MB
MAX_STRING = 16 * 1024 * 1024
MAX_COUNT = 1 << 24  # metadata entries, tensors, array elements
MAX_DIMS = 4  # GGML_MAX_DIMS
KEEP_ARRAY = 4096  # arrays longer than this are skipped, not kept (token lists)
SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q",
           11: "<q", 12: "<d"}  # fmt: skip
STRING, ARRAY = 8, 9
# ggml type -> (elements per block, bytes per block), from gguf-py's GGML_QUANT_SIZES
BLOCKS = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
          9: (32, 40), 10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176),
          14: (256, 210), 15: (256, 292), 16: (256, 66), 17: (256, 74), 18: (256, 98),
          19: (256, 50), 20: (32, 18), 21: (256, 110), 22: (256, 82), 23: (256, 136),
          24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8), 29: (256, 56),
          30: (1, 2), 34: (256, 54), 35: (256, 66), 39: (32, 17), 40: (64, 36),
          41: (128, 18)}  # fmt: skip


class GgufError(ValueError):
    """The stream is not a GGUF file this reader can trust; one line."""


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int

    @property
    def nbytes(self) -> int | None:
        """Its size in the file; None for a ggml type this reader does not know."""
        block = BLOCKS.get(self.ggml_type)
        if block is None:
            return None
        elements = 1
        for dim in self.shape:
            elements *= dim
        return elements // block[0] * block[1]


@dataclass(frozen=True)
class Header:
    version: int
    metadata: dict[str, Any]  # scalars, strings and arrays of up to KEEP_ARRAY elements
    tensors: tuple[Tensor, ...]

    def tensor_bytes(self) -> int | None:
        sizes = [tensor.nbytes for tensor in self.tensors]
        return None if None in sizes else sum(size or 0 for size in sizes)


class _Reader:
    def __init__(self, stream: BinaryIO, limit: int) -> None:
        self.stream, self.left = stream, limit

    def bytes(self, count: int) -> bytes:
        if count > self.left:
            raise GgufError("header larger than this reader accepts: not a model file it trusts")
        data = self.stream.read(count)
        if len(data) != count:
            raise GgufError("ends inside its header: the file is truncated")
        self.left -= count
        return data

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.bytes(struct.calcsize(fmt)))[0]

    def count(self, what: str) -> int:
        value: int = self.unpack("<Q")
        if value > MAX_COUNT:
            raise GgufError(f"claims {value:,} {what}: more than {MAX_COUNT:,}, refused")
        return value

    def string(self) -> str:
        length: int = self.unpack("<Q")
        if length > MAX_STRING:
            raise GgufError(f"holds a string of {length:,} bytes: refused")
        return self.bytes(length).decode("utf-8", errors="replace")

    def value(self, kind: int, depth: int = 0) -> Any:
        if kind in SCALARS:
            return self.unpack(SCALARS[kind])
        if kind == STRING:
            return self.string()
        if kind != ARRAY or depth > 1:
            raise GgufError(f"has a metadata value of unknown type {kind}: not GGUF 2 or 3")
        item: int = self.unpack("<I")
        length = self.count("array elements")
        if item in SCALARS and length > KEEP_ARRAY:
            self.bytes(length * struct.calcsize(SCALARS[item]))  # skipped, within the limit
            return None
        values = []
        for _ in range(length):
            found = self.value(item, depth + 1)
            if length <= KEEP_ARRAY:  # a long list of strings is read through, not kept
                values.append(found)
        return values if length <= KEEP_ARRAY else None


def read_header(stream: BinaryIO, limit: int = MAX_HEADER) -> Header:
    """The header of the GGUF file `stream` is positioned at the start of."""
    reader = _Reader(stream, limit)
    if reader.bytes(4) != MAGIC:
        raise GgufError("is not a GGUF file (no GGUF magic at its start)")
    version: int = reader.unpack("<I")
    if version not in (2, 3):
        big = " (a big-endian file?)" if version > 0xFFFF else ""
        raise GgufError(f"has GGUF version {version}{big}: only versions 2 and 3 are read")
    tensor_count = reader.count("tensors")
    metadata_count = reader.count("metadata entries")
    metadata: dict[str, Any] = {}
    for _ in range(metadata_count):
        key = reader.string()
        metadata[key] = reader.value(reader.unpack("<I"))
    tensors = []
    for _ in range(tensor_count):
        name = reader.string()
        dims: int = reader.unpack("<I")
        if dims > MAX_DIMS:
            raise GgufError(f"tensor {name[:80]!r} has {dims} dimensions: ggml has at most 4")
        shape = tuple(int(reader.unpack("<Q")) for _ in range(dims))
        tensors.append(Tensor(name, shape, reader.unpack("<I"), reader.unpack("<Q")))
    return Header(version, metadata, tuple(tensors))


def _per_layer(value: Any, layers: int) -> list[int] | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return [value] * layers
    if isinstance(value, list) and len(value) == layers and all(isinstance(v, int) for v in value):
        return list(value)
    return None


def kv_cache_bytes(header: Header, n_ctx: int, bytes_per_value: int = 2) -> int | None:
    """The KV cache of `n_ctx` tokens (f16 by default, llama.cpp's); None when the header lacks
    the architecture's sizes."""
    meta = header.metadata
    arch = meta.get("general.architecture")
    layers = meta.get(f"{arch}.block_count")
    embd = meta.get(f"{arch}.embedding_length")
    if not isinstance(arch, str) or not isinstance(layers, int) or not isinstance(embd, int):
        return None
    heads = _per_layer(meta.get(f"{arch}.attention.head_count"), layers)
    kv_heads = _per_layer(meta.get(f"{arch}.attention.head_count_kv", heads), layers)
    if heads is None or kv_heads is None or not max(heads, default=0):
        return None
    key = meta.get(f"{arch}.attention.key_length", embd // max(heads))
    val = meta.get(f"{arch}.attention.value_length", key)
    if not isinstance(key, int) or not isinstance(val, int):
        return None
    return n_ctx * sum(kv_heads) * (key + val) * bytes_per_value


def context_length(header: Header) -> int | None:
    arch = header.metadata.get("general.architecture")
    found = header.metadata.get(f"{arch}.context_length")
    return found if isinstance(found, int) and found > 0 else None
