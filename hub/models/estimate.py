"""A model's VRAM per GPU, when its definition leaves vram_gb out.

vLLM: the weights (the source's file sizes) x 1.2 + 2 GiB, divided by gpu_memory_utilization
(vLLM claims that fraction of the GPU, so the GPU must be that much larger); with tensor
parallelism over N GPUs each holds 1/N of the weights. llama.cpp: the GGUF file's tensor sizes
plus the KV cache for n_ctx tokens (f16), both from the file's header, for the layers on the
GPU. Sizes come through `Sizes`: `DiskSizes` reads local paths; a source that is not on this
host (a Hugging Face repository) gives "estimate unknown: set vram_gb" rather than a guess; a
registry entry's file sizes come from the hub's database (`EntrySizes`), its GGUF header is not
at hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from hub.models import gguf
from hub.models.schema import (
    DEFAULT_GPU_MEMORY_UTILIZATION,
    DEFAULT_N_CTX,
    Model,
    PathSource,
    RegistryCopy,
    RegistrySource,
    Source,
)

GIB = 1024**3
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
OVERHEAD = 1.2
FIXED_GIB = 2.0


class Sizes(Protocol):
    def weight_files(self, source: Source) -> list[int] | None:
        """The byte sizes of the source's weight files; None when they are not known."""

    def gguf_header(self, source: Source) -> gguf.Header | None:
        """The header of the source's GGUF file; None when it is not at hand."""


class DiskSizes:
    """Local paths only: a directory's weight files (top level), or one file."""

    def weight_files(self, source: Source) -> list[int] | None:
        if not isinstance(source, PathSource):
            return None
        path = Path(source.path)
        try:
            if path.is_file():
                return [path.stat().st_size]
            files = [p for p in path.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file()]
            return [p.stat().st_size for p in files] or None
        except OSError:
            return None

    def gguf_header(self, source: Source) -> gguf.Header | None:
        if not isinstance(source, PathSource) or not source.is_gguf:
            return None
        try:
            with Path(source.path).open("rb") as file:
                return gguf.read_header(file)
        except OSError:
            return None


class EntrySizes:
    """A registry source's weight files from its entry (top level, as on a disk); any other
    source from `base`."""

    def __init__(self, base: Sizes, entry: RegistryCopy | None) -> None:
        self.base = base
        self.entry = entry

    def weight_files(self, source: Source) -> list[int] | None:
        if not isinstance(source, RegistrySource):
            return self.base.weight_files(source)
        entry = self.entry
        if entry is None or entry.name != source.name:
            return None
        found = [size for path, size in entry.files
                 if "/" not in path and path.lower().endswith(WEIGHT_SUFFIXES)]  # fmt: skip
        return found or None

    def gguf_header(self, source: Source) -> gguf.Header | None:
        return self.base.gguf_header(source)


@dataclass(frozen=True)
class Estimate:
    vram_gb: float | None  # per GPU; None: unknown
    basis: str  # one line: where the figure comes from, or what to do when it is unknown


def _up(gib: float) -> float:
    return math.ceil(gib * 10 - 1e-9) / 10  # to a tenth of a GiB, never below the need


def _unknown(model: Model, why: str) -> Estimate:
    return Estimate(None, f"estimate unknown: set vram_gb ({why})")


def _vllm(model: Model, sizes: Sizes, gpus: int) -> Estimate:
    files = sizes.weight_files(model.source)
    if files is None:
        return _unknown(model, f"the weights of {model.source.describe()} are not on this host")
    gmu = model.vllm.gpu_memory_utilization if model.vllm else None
    gmu = gmu or DEFAULT_GPU_MEMORY_UTILIZATION
    weights = sum(files) / GIB
    need = (weights / gpus * OVERHEAD + FIXED_GIB) / gmu
    split = f" / {gpus} GPUs" if gpus > 1 else ""
    return Estimate(_up(need), f"weights {weights:.1f} GiB{split} x {OVERHEAD} + {FIXED_GIB:g} "
                               f"GiB, / gpu_memory_utilization {gmu:g}")  # fmt: skip


def _llama(model: Model, sizes: Sizes, gpus: int) -> Estimate:
    params = model.llama_cpp
    assert params is not None
    if params.backend == "cpu" or params.n_gpu_layers == 0:
        return Estimate(0.0, "no layer on a GPU (backend cpu or n_gpu_layers 0)")
    try:
        header = sizes.gguf_header(model.source)
    except gguf.GgufError as exc:
        return _unknown(model, f"{model.source.describe()} {exc}")
    if header is None:
        return _unknown(model, f"the file of {model.source.describe()} is not on this host")
    tensors = header.tensor_bytes()
    if tensors is None:
        return _unknown(model, "the GGUF file has a tensor type this estimate does not know")
    n_ctx = params.n_ctx if params.n_ctx is not None else DEFAULT_N_CTX
    n_ctx = n_ctx or gguf.context_length(header) or DEFAULT_N_CTX  # 0: the trained context
    kv = gguf.kv_cache_bytes(header, n_ctx)
    if kv is None:
        return _unknown(model, "the GGUF header lacks the sizes its KV cache needs")
    layers = header.metadata.get(f"{header.metadata.get('general.architecture')}.block_count")
    share = 1.0
    if params.n_gpu_layers not in (None, -1) and isinstance(layers, int) and layers > 0:
        share = min(1.0, params.n_gpu_layers / layers)
    need = (tensors + kv) * share / gpus / GIB
    part = f", {share:.0%} of the layers" if share < 1 else ""
    split = f", / {gpus} GPUs" if gpus > 1 else ""
    return Estimate(_up(need), f"tensors {tensors / GIB:.2f} GiB + KV cache for {n_ctx} tokens "
                               f"{kv / GIB:.2f} GiB{part}{split}")  # fmt: skip


def estimate(model: Model, sizes: Sizes, gpus: int = 1) -> Estimate:
    """VRAM per GPU for `model` spread over `gpus` GPUs (its vram_gb when it has one)."""
    if model.vram_gb is not None:
        return Estimate(model.vram_gb, "vram_gb in the definition")
    if model.engine == "llama-cpp":
        return _llama(model, sizes, max(1, gpus))
    return _vllm(model, sizes, max(1, gpus))
