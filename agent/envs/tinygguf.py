"""A tiny llama GGUF for the verification gate, written with struct and array alone (no numpy,
no gguf package on the agent).

The layout (ggml's docs/gguf.md, version 3, little-endian): "GGUF", version, tensor count,
metadata count, the metadata (key, value type, value), the tensor infos (name, dimensions
innermost first, ggml type, offset into the data), then the data, aligned to 32 bytes. The
model: llama architecture, 2 layers, 32-wide embeddings, 2 heads, a 64-wide feed-forward, F32
weights from a seeded RNG; a SentencePiece ("llama") vocabulary of <unk>, <s>, </s>, the 256
byte tokens (type BYTE, so any text encodes) and a few word pieces. About 200 KB; a llama.cpp
of any backend loads it and answers a token in milliseconds.
"""

from __future__ import annotations

import random
import struct
from array import array
from pathlib import Path

ALIGNMENT = 32
U32, I32, F32, BOOL, STRING, ARRAY = 4, 5, 6, 7, 8, 9
GGML_F32 = 0
NORMAL, UNKNOWN, CONTROL, BYTE = 1, 2, 3, 6
WORDS = ("hello", "world", "tiny", "model", "the", "a", "is", "ready", "node", "agent")


def vocabulary() -> tuple[list[str], list[float], list[int]]:
    tokens, scores, types = ["<unk>", "<s>", "</s>"], [0.0, 0.0, 0.0], [UNKNOWN, CONTROL, CONTROL]
    for byte in range(256):
        tokens.append(f"<0x{byte:02X}>")
        scores.append(0.0)
        types.append(BYTE)
    pieces = ["\u2581", *"abcdefghijklmnopqrstuvwxyz", *(f"\u2581{w}" for w in WORDS)]
    for rank, piece in enumerate(pieces):
        tokens.append(piece)
        scores.append(float(len(piece)) - rank / 1000)
        types.append(NORMAL)
    return tokens, scores, types


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def _value(kind: int, value: object) -> bytes:
    if kind == STRING:
        return _string(str(value))
    return struct.pack({U32: "<I", I32: "<i", F32: "<f", BOOL: "<?"}[kind], value)


def _array(kind: int, values: list[object]) -> bytes:
    return struct.pack("<IQ", kind, len(values)) + b"".join(_value(kind, v) for v in values)


def tiny_gguf(seed: int = 0, layers: int = 2, n_embd: int = 32, n_head: int = 2,
              n_ff: int = 64) -> bytes:  # fmt: skip
    """The whole file; the same arguments give the same bytes."""
    rng = random.Random(seed)
    tokens, scores, types = vocabulary()
    n_vocab = len(tokens)
    metadata: list[tuple[str, int, object]] = [
        ("general.architecture", STRING, "llama"),
        ("general.name", STRING, "gpufleet-verify"),
        ("general.file_type", U32, 0),
        ("llama.context_length", U32, 256),
        ("llama.embedding_length", U32, n_embd),
        ("llama.block_count", U32, layers),
        ("llama.feed_forward_length", U32, n_ff),
        ("llama.attention.head_count", U32, n_head),
        ("llama.attention.head_count_kv", U32, n_head),
        ("llama.rope.dimension_count", U32, n_embd // n_head),
        ("llama.attention.layer_norm_rms_epsilon", F32, 1e-5),
        ("llama.vocab_size", U32, n_vocab),
        ("tokenizer.ggml.model", STRING, "llama"),
        ("tokenizer.ggml.bos_token_id", U32, 1),
        ("tokenizer.ggml.eos_token_id", U32, 2),
        ("tokenizer.ggml.unknown_token_id", U32, 0),
        ("tokenizer.ggml.add_bos_token", BOOL, True),
        ("tokenizer.ggml.add_eos_token", BOOL, False),
    ]
    arrays: list[tuple[str, int, list[object]]] = [
        ("tokenizer.ggml.tokens", STRING, list(tokens)),
        ("tokenizer.ggml.scores", F32, list(scores)),
        ("tokenizer.ggml.token_type", I32, list(types)),
    ]
    # (name, dims innermost first); "w": random weights, "1": a norm's ones
    tensors: list[tuple[str, tuple[int, ...], str]] = [
        ("token_embd.weight", (n_embd, n_vocab), "w"),
        ("output_norm.weight", (n_embd,), "1"),
        ("output.weight", (n_embd, n_vocab), "w"),
    ]
    for layer in range(layers):
        block = f"blk.{layer}"
        tensors.append((f"{block}.attn_norm.weight", (n_embd,), "1"))
        for part in ("attn_q", "attn_k", "attn_v", "attn_output"):
            tensors.append((f"{block}.{part}.weight", (n_embd, n_embd), "w"))
        tensors += [
            (f"{block}.ffn_norm.weight", (n_embd,), "1"),
            (f"{block}.ffn_gate.weight", (n_embd, n_ff), "w"),
            (f"{block}.ffn_up.weight", (n_embd, n_ff), "w"),
            (f"{block}.ffn_down.weight", (n_ff, n_embd), "w"),
        ]
    head = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(metadata) + len(arrays)))
    for name, kind, value in metadata:
        head += _string(name) + struct.pack("<I", kind) + _value(kind, value)
    for name, kind, items in arrays:
        head += _string(name) + struct.pack("<I", ARRAY) + _array(kind, items)
    data = bytearray()
    for name, dims, fill in tensors:
        head += _string(name) + struct.pack("<I", len(dims))
        head += b"".join(struct.pack("<Q", d) for d in dims)
        head += struct.pack("<IQ", GGML_F32, len(data))
        count = 1
        for dim in dims:
            count *= dim
        weights: list[float] = (
            [1.0] * count if fill == "1" else [rng.gauss(0.0, 0.02) for _ in range(count)]
        )
        data += array("f", weights).tobytes()
        data += b"\0" * (-len(data) % ALIGNMENT)
    head += b"\0" * (-len(head) % ALIGNMENT)
    return bytes(head + data)


def write_tiny_gguf(path: Path, seed: int = 0) -> Path:
    path.write_bytes(tiny_gguf(seed))
    return path
