"""A GGUF file written byte by byte (ggml's docs/gguf.md, version 3), for the reader's tests:
small, with real tensor data after the aligned header, so no download is needed."""

from __future__ import annotations

import struct
from typing import Any

ALIGNMENT = 32
KINDS = {"u32": (4, "<I"), "i32": (5, "<i"), "f32": (6, "<f"), "bool": (7, "<?"), "u64": (10, "<Q")}


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def _value(value: Any) -> bytes:
    """A typed value: (kind, value) for numbers, str, or a list of str / (kind, [values])."""
    if isinstance(value, str):
        return struct.pack("<I", 8) + _string(value)
    if isinstance(value, list):
        body = b"".join(_string(item) for item in value)
        return struct.pack("<IIQ", 9, 8, len(value)) + body
    kind, item = value
    if isinstance(item, list):
        code, fmt = KINDS[kind]
        body = b"".join(struct.pack(fmt, x) for x in item)
        return struct.pack("<IIQ", 9, code, len(item)) + body
    code, fmt = KINDS[kind]
    return struct.pack("<I", code) + struct.pack(fmt, item)


def gguf_bytes(metadata: dict[str, Any], tensors: list[tuple[str, tuple[int, ...], int, int]],
               version: int = 3, data: bool = True) -> bytes:  # fmt: skip
    """tensors: (name, shape, ggml type, size in bytes); their data are zeros (left out when
    not `data`: the header is all a reader of sizes needs)."""
    head = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(metadata))
    head += b"".join(_string(key) + _value(value) for key, value in metadata.items())
    offset = 0
    for name, shape, kind, size in tensors:
        head += _string(name) + struct.pack("<I", len(shape))
        head += b"".join(struct.pack("<Q", dim) for dim in shape)
        head += struct.pack("<IQ", kind, offset)
        offset += -(-size // ALIGNMENT) * ALIGNMENT
    head += b"\0" * (-len(head) % ALIGNMENT)
    return head + b"\0" * offset if data else head


TINY_METADATA: dict[str, Any] = {
    "general.architecture": "llama",
    "general.alignment": ("u32", ALIGNMENT),
    "llama.block_count": ("u32", 2),
    "llama.context_length": ("u32", 512),
    "llama.embedding_length": ("u32", 64),
    "llama.attention.head_count": ("u32", 4),
    "llama.attention.head_count_kv": ("u32", 2),
    "llama.rope.freq_base": ("f32", 10000.0),
    "tokenizer.ggml.tokens": [f"t{i}" for i in range(5000)],  # longer than the reader keeps
    "tokenizer.ggml.scores": ("f32", [0.0] * 5000),
}
TINY_TENSORS: list[tuple[str, tuple[int, ...], int, int]] = [
    ("token_embd.weight", (64, 100), 0, 64 * 100 * 4),  # F32
    ("blk.0.attn_q.weight", (64, 64), 8, 64 * 64 // 32 * 34),  # Q8_0
    ("blk.1.ffn_up.weight", (256, 4), 12, 4 * 144),  # Q4_K
]
TINY_TENSOR_BYTES = 25600 + 4352 + 576
TINY_KV_PER_TOKEN = 2 * 2 * (16 + 16) * 2  # layers x kv heads x (key + value dims) x f16


def tiny() -> bytes:
    return gguf_bytes(TINY_METADATA, TINY_TENSORS)
