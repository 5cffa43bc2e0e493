"""A model definition: the one place a model's serving parameters live (issue 14).

Frozen values, built only by `hub.models.fields.read` (which checks every field), so a
`Model` is always valid. Infrastructure parameters (how many GPUs, tensor parallel size, CPU
offload, host and port) are not part of a model: they are a `Deployment`, given where the
model is started, and passed to the command generators next to the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ENGINES = ("vllm", "llama-cpp")
BACKENDS = ("cuda", "vulkan", "rocm", "cpu")
DTYPES = ("auto", "half", "float16", "bfloat16", "float", "float32")  # vLLM's ModelDType
DEFAULT_GPU_MEMORY_UTILIZATION = 0.9  # vLLM's CacheConfig default
DEFAULT_N_CTX = 2048  # llama-cpp-python's ModelSettings default
HEALTH_PATHS = {"vllm": "/health", "llama-cpp": "/v1/models"}
DRAIN_METRICS = {"vllm": "vllm:num_requests_running", "llama-cpp": None}


@dataclass(frozen=True)
class HfSource:
    """A Hugging Face model repository (safetensors weights)."""

    repo: str
    revision: str | None = None

    def describe(self) -> str:
        return f"hf:{self.repo}" + (f"@{self.revision}" if self.revision else "")


@dataclass(frozen=True)
class GgufSource:
    """One GGUF file in a Hugging Face repository."""

    repo: str
    file: str
    revision: str | None = None

    def describe(self) -> str:
        return f"gguf:{self.repo}/{self.file}" + (f"@{self.revision}" if self.revision else "")


@dataclass(frozen=True)
class PathSource:
    """A directory (safetensors) or a file (.gguf) on the host that runs the model."""

    path: str

    @property
    def is_gguf(self) -> bool:
        return self.path.lower().endswith(".gguf")

    def describe(self) -> str:
        return f"path:{self.path}"


@dataclass(frozen=True)
class RegistrySource:
    """An entry of the hub's model registry (`hubctl registry pull`), served from the node's
    model cache; `file` picks one file of a files-layout entry (llama.cpp: a .gguf; None: the
    entry's only .gguf, resolved when the model is deployed)."""

    name: str
    file: str | None = None

    @property
    def is_gguf(self) -> bool:
        return self.file is not None and self.file.lower().endswith(".gguf")

    def describe(self) -> str:
        return f"registry:{self.name}" + (f"/{self.file}" if self.file else "")


Source = HfSource | GgufSource | PathSource | RegistrySource


@dataclass(frozen=True)
class RegistryCopy:
    """The registry entry a RegistrySource names, as the commands need it (from the hub's
    database, handed to the generators in `Deployment.entry`): its state, how nodes lay it
    out, and its files (path, size)."""

    name: str
    layout: str  # hf | files
    repo: str = ""  # hf layout: ORG/NAME
    revision: str = ""
    files: tuple[tuple[str, int], ...] = ()  # (path relative to the entry, bytes)
    state: str = "ready"  # pulling | ready | failed
    message: str = ""  # why it failed

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(path for path, _ in self.files)

    @property
    def ready(self) -> bool:
        return self.state == "ready"


@dataclass(frozen=True)
class VllmParams:
    """vLLM engine parameters; None means "vLLM's default" and produces no flag."""

    max_model_len: int | None = None
    gpu_memory_utilization: float | None = None
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    enable_chunked_prefill: bool | None = None  # on by default in vLLM
    enable_prefix_caching: bool | None = None  # on by default in vLLM
    enable_auto_tool_choice: bool | None = None
    tool_call_parser: str | None = None
    reasoning_parser: str | None = None
    dtype: str | None = None
    disable_custom_all_reduce: bool | None = None
    extra_args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    image: str | None = None  # the server's container image; None: the hub's --vllm-image


@dataclass(frozen=True)
class LlamaCppParams:
    """llama-cpp-python server parameters; None means the server's default."""

    n_ctx: int | None = None
    n_gpu_layers: int | None = None  # -1: every layer on the GPU (the default off the cpu backend)
    n_batch: int | None = None
    chat_format: str | None = None
    backend: str = "cuda"
    extra_args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()


DEFAULT_GATEWAY_PORT = 8000
LOAD_TIMEOUTS_S = {"vllm": 600.0, "llama-cpp": 300.0}  # a gateway's wait for a cold start


@dataclass(frozen=True)
class GatewayParams:
    """How the OpenAI-compatible gateway treats the model (its `gateway:` section)."""

    idle_ttl: float | None = None  # seconds with no request before it is stopped; None: never
    load_timeout: float | None = None  # seconds a request waits for it to load; None: by engine
    node: str | None = None  # where a scale from zero starts it; None: placement picks
    port: int = DEFAULT_GATEWAY_PORT  # the port a scale from zero starts it on

    def load_timeout_s(self, engine: str) -> float:
        return self.load_timeout if self.load_timeout is not None else LOAD_TIMEOUTS_S[engine]


@dataclass(frozen=True)
class Model:
    name: str  # a DNS label: the id used everywhere
    source: Source
    engine: str  # one of ENGINES
    served_model_name: str  # what clients ask for; /v1/models lists it
    vllm: VllmParams | None = None  # set exactly when engine == "vllm"
    llama_cpp: LlamaCppParams | None = None  # set exactly when engine == "llama-cpp"
    vram_gb: float | None = None  # per GPU; None: estimated (hub.models.estimate)
    health_path: str = "/health"
    drain_metric: str | None = None  # None: nothing to drain on (stopped at once)
    aliases: tuple[str, ...] = ()
    description: str = ""
    gateway: GatewayParams = GatewayParams()
    file: str = field(default="", compare=False)  # where it was read from: not the definition
    digest: str = field(default="", compare=False)  # sha256 of the canonical definition

    @property
    def ids(self) -> tuple[str, ...]:
        """Every name the model answers to: its name, then its aliases."""
        return (self.name, *self.aliases)


@dataclass(frozen=True)
class Deployment:
    """Where and how a model runs: the infrastructure parameters the model leaves out."""

    gpus: tuple[int, ...] = ()  # GPU indexes on the node; none: the engine's default
    tensor_parallel_size: int | None = None  # vLLM; None: one per GPU in `gpus` (at least 1)
    cpu_offload_gb: float = 0  # vLLM: GiB of weights per GPU kept in host memory
    host: str | None = None  # the server's listen address; None: the engine's default
    port: int | None = None
    model_path: str | None = None  # the source resolved on the host (a local copy), if any
    python: str = "python"  # llama.cpp: the environment's interpreter
    entry: RegistryCopy | None = None  # a registry source: its entry, as the hub knows it

    @property
    def parallel(self) -> int:
        return self.tensor_parallel_size or max(1, len(self.gpus))


def source_dict(source: Source) -> dict[str, Any]:
    if isinstance(source, PathSource):
        return {"path": source.path}
    if isinstance(source, RegistrySource):
        found: dict[str, Any] = {"registry": source.name}
        if source.file:
            found["file"] = source.file
        return found
    inner: dict[str, Any] = {"repo": source.repo}
    if isinstance(source, GgufSource):
        inner["file"] = source.file
    if source.revision:
        inner["revision"] = source.revision
    return {"gguf" if isinstance(source, GgufSource) else "hf": inner}


def _params(params: VllmParams | LlamaCppParams) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in vars(params).items():
        if key == "extra_args" and value:
            found[key] = list(value)
        elif key == "env" and value:
            found[key] = dict(value)
        elif key not in ("extra_args", "env") and value is not None:
            found[key] = value
    return found


def as_dict(model: Model) -> dict[str, Any]:
    """The model in its YAML form (the keys a model file holds), defaults left out where the
    field is optional; `fields.read` of this gives the same model back."""
    data: dict[str, Any] = {"name": model.name}
    if model.description:
        data["description"] = model.description
    if model.served_model_name != model.name:
        data["served_model_name"] = model.served_model_name
    data["engine"] = model.engine
    data["source"] = source_dict(model.source)
    if model.vllm is not None and (params := _params(model.vllm)):
        data["vllm"] = params
    if model.llama_cpp is not None and (params := _params(model.llama_cpp)):
        data["llama_cpp"] = params
    if model.vram_gb is not None:
        data["vram_gb"] = model.vram_gb
    if model.health_path != HEALTH_PATHS[model.engine]:
        data["health_path"] = model.health_path
    if model.drain_metric != DRAIN_METRICS[model.engine]:
        data["drain_metric"] = model.drain_metric or "none"
    if model.aliases:
        data["aliases"] = list(model.aliases)
    if gateway := gateway_dict(model.gateway):
        data["gateway"] = gateway
    return data


def gateway_dict(params: GatewayParams) -> dict[str, Any]:
    """The `gateway:` section, the port left out at its default ({} for all defaults); whole
    seconds written as people write them (900, not 900.0)."""
    found: dict[str, Any] = {}
    for key, value in vars(params).items():
        if value is None or (key == "port" and value == DEFAULT_GATEWAY_PORT):
            continue
        found[key] = int(value) if isinstance(value, float) and value.is_integer() else value
    return found
