"""VRAM estimates: vLLM from weight file sizes, llama.cpp from a GGUF header (a tiny GGUF the
test writes), "estimate unknown: set vram_gb" when the sizes are not at hand; and the GGUF
header reader on hostile files."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest

from hub.models import gguf
from hub.models.estimate import GIB, DiskSizes, Estimate, estimate
from hub.models.load import parse_models
from hub.models.schema import Model, Source
from tests.hub.models.gguf_file import (
    TINY_KV_PER_TOKEN,
    TINY_TENSOR_BYTES,
    TINY_TENSORS,
    gguf_bytes,
    tiny,
)


class KnownSizes:
    """Sizes a registry would know: weight files by source, no GGUF headers."""

    def __init__(self, files: dict[str, list[int]]) -> None:
        self.files = files

    def weight_files(self, source: Source) -> list[int] | None:
        return self.files.get(source.describe())

    def gguf_header(self, source: Source) -> gguf.Header | None:
        return None


def model(text: str) -> Model:
    return parse_models(text, Path("models/m.yaml"))[0]


def test_the_header_of_a_tiny_gguf() -> None:
    header = gguf.read_header(io.BytesIO(tiny()))
    assert header.version == 3
    assert header.metadata["general.architecture"] == "llama"
    assert header.metadata["llama.block_count"] == 2
    assert header.metadata["tokenizer.ggml.tokens"] is None  # 5000 entries: read through
    assert [(t.name, t.shape, t.ggml_type) for t in header.tensors] == [
        (name, shape, kind) for name, shape, kind, _ in TINY_TENSORS]  # fmt: skip
    assert header.tensor_bytes() == TINY_TENSOR_BYTES
    assert gguf.kv_cache_bytes(header, 100) == 100 * TINY_KV_PER_TOKEN
    assert gguf.context_length(header) == 512


def test_a_gguf_model_on_disk_is_estimated_from_its_header(tmp_path: Path) -> None:
    path = tmp_path / "tiny.gguf"
    path.write_bytes(tiny())
    found = estimate(model(f"name: tiny\nsource: {{path: {path}}}\nllama_cpp: {{n_ctx: 1024}}\n"),
                     DiskSizes())  # fmt: skip
    need = (TINY_TENSOR_BYTES + 1024 * TINY_KV_PER_TOKEN) / GIB
    assert found.vram_gb == 0.1 and need < 0.1  # rounded up to a tenth, never below the need
    assert found.basis == "tensors 0.00 GiB + KV cache for 1024 tokens 0.00 GiB"
    trained = estimate(model(f"name: t\nsource: {{path: {path}}}\nllama_cpp: {{n_ctx: 0}}\n"),
                       DiskSizes())  # fmt: skip
    assert "KV cache for 512 tokens" in trained.basis  # n_ctx 0: the trained context
    cpu = model(f"name: t\nsource: {{path: {path}}}\nllama_cpp: {{backend: cpu}}\n")
    assert estimate(cpu, DiskSizes()) == Estimate(0.0, "no layer on a GPU (backend cpu or "
                                                       "n_gpu_layers 0)")  # fmt: skip


def test_a_larger_gguf_is_counted_per_layer_and_per_gpu(tmp_path: Path) -> None:
    path = tmp_path / "big.gguf"
    meta = {"general.architecture": "llama", "llama.block_count": ("u32", 4),
            "llama.embedding_length": ("u32", 4096), "llama.attention.head_count": ("u32", 32),
            "llama.attention.head_count_kv": ("u32", [8, 8, 8, 8])}  # fmt: skip
    # 1 GiB of F16 weights declared; the header is all the estimate reads
    path.write_bytes(gguf_bytes(meta, [("w", (4096, 131072), 1, 4096 * 131072 * 2)], data=False))
    text = f"name: big\nsource: {{path: {path}}}\nllama_cpp: {{n_ctx: 8192, n_gpu_layers: 2}}\n"
    kv = 8192 * 4 * 8 * (128 + 128) * 2  # 0.125 GiB
    found = estimate(model(text), DiskSizes(), gpus=2)
    assert found.vram_gb == pytest.approx((GIB + kv) / 2 / 2 / GIB, abs=0.1)
    assert found.basis == ("tensors 1.00 GiB + KV cache for 8192 tokens 0.12 GiB, 50% of the "
                           "layers, / 2 GPUs")  # fmt: skip


def test_vllm_from_weight_sizes_and_unknown_without_them(tmp_path: Path) -> None:
    chat = model("name: chat\nsource: {hf: {repo: Org/Chat}}\nvllm: {gpu_memory_utilization: 0.8}")
    sixteen = KnownSizes({"hf:Org/Chat": [8 * GIB, 8 * GIB]})
    found = estimate(chat, sixteen)
    assert found.vram_gb == pytest.approx((16 * 1.2 + 2) / 0.8, abs=0.1)  # 26.5 GiB
    assert found.basis == "weights 16.0 GiB x 1.2 + 2 GiB, / gpu_memory_utilization 0.8"
    assert estimate(chat, sixteen, gpus=2).vram_gb == pytest.approx((8 * 1.2 + 2) / 0.8, abs=0.1)
    unknown = estimate(chat, DiskSizes())
    assert unknown == Estimate(None, "estimate unknown: set vram_gb (the weights of hf:Org/Chat "
                                     "are not on this host)")  # fmt: skip
    given = model("name: g\nsource: {hf: {repo: Org/Chat}}\nvram_gb: 21.5\n")
    assert estimate(given, DiskSizes()) == Estimate(21.5, "vram_gb in the definition")
    weights = tmp_path / "chat"
    weights.mkdir()
    (weights / "model-00001.safetensors").write_bytes(b"\0" * 1000)
    (weights / "config.json").write_text("{}")
    local = model(f"name: local\nsource: {{path: {weights}}}\n")
    assert estimate(local, DiskSizes()).vram_gb == pytest.approx(2 / 0.9, abs=0.1)  # 0.1 + 2 GiB
    remote = model("name: r\nsource: {gguf: {repo: Org/G, file: g.gguf}}\n")
    assert estimate(remote, DiskSizes()).basis == (
        "estimate unknown: set vram_gb (the file of gguf:Org/G/g.gguf is not on this host)"
    )


HOSTILE = [
    (b"GGML" + b"\0" * 20, "is not a GGUF file (no GGUF magic at its start)"),
    (b"GGUF" + struct.pack("<I", 1) + b"\0" * 16, "has GGUF version 1: only versions 2 and 3"),
    (b"GGUF" + struct.pack(">I", 3) + b"\0" * 16, "has GGUF version 50331648 (a big-endian"),
    (b"GGUF" + struct.pack("<IQQ", 3, 0, 1 << 40), "claims 1,099,511,627,776 metadata entries"),
    (b"GGUF" + struct.pack("<IQQQ", 3, 0, 1, 1 << 40), "holds a string of 1,099,511,627,776 bytes"),
    (tiny()[:200], "ends inside its header: the file is truncated"),
    (b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1) + b"k" + struct.pack("<I", 99),
     "has a metadata value of unknown type 99"),
    (gguf_bytes({}, [("t", (1, 1, 1, 1, 1), 0, 4)]), "tensor 't' has 5 dimensions"),
]  # fmt: skip


@pytest.mark.parametrize(("data", "message"), HOSTILE, ids=[m[:30] for _, m in HOSTILE])
def test_hostile_gguf_headers_are_refused_in_one_line(data: bytes, message: str) -> None:
    with pytest.raises(gguf.GgufError) as caught:
        gguf.read_header(io.BytesIO(data))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_the_read_limit_and_a_hostile_file_in_an_estimate(tmp_path: Path) -> None:
    with pytest.raises(gguf.GgufError, match="header larger than this reader accepts"):
        gguf.read_header(io.BytesIO(tiny()), limit=1000)
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a model")
    found = estimate(model(f"name: b\nsource: {{path: {bad}}}\n"), DiskSizes())
    assert found == Estimate(None, f"estimate unknown: set vram_gb (path:{bad} is not a GGUF "
                                   "file (no GGUF magic at its start))")  # fmt: skip
