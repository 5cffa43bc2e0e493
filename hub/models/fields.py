"""A model definition's fields, checked in full: every problem of a document, one line each.

    name: qwen3-coder-30b              # a DNS label (default: the file name), the id everywhere
    description: Qwen3 Coder 30B-A3B, FP8
    served_model_name: qwen3-coder     # what clients ask for (default: the name)
    engine: vllm                       # vllm | llama-cpp (default: llama-cpp for GGUF, else vllm)
    source:                            # exactly one of:
      hf: {repo: Qwen/Qwen3-Coder-30B-A3B-Instruct-FP8, revision: main}
      # gguf: {repo: Qwen/Qwen3-8B-GGUF, file: Qwen3-8B-Q4_K_M.gguf, revision: main}
      # path: /models/qwen3-8b          (a directory, or a .gguf file, on the host)
      # registry: qwen3-8b-gguf          (an entry of the hub's registry, from the node's cache)
      # file: Qwen3-8B-Q4_K_M.gguf       (with registry: the entry's file llama.cpp serves;
      #                                   default: the entry's only .gguf)
    vllm: {max_model_len: 65536, enable_auto_tool_choice: true, tool_call_parser: qwen3_coder}
    # llama_cpp: {n_ctx: 8192, n_gpu_layers: -1, n_batch: 512, chat_format: chatml, backend: cuda}
    vram_gb: 40                        # per GPU (default: estimated)
    health_path: /health               # default: /health (vLLM), /v1/models (llama.cpp)
    drain_metric: vllm:num_requests_running   # or none; llama.cpp has no metrics
    aliases: [coder]
    gateway:                           # the OpenAI-compatible gateway's handling (optional)
      idle_ttl: 900                    # stopped after 900 s with no request (default: never)
      load_timeout: 600                # a request waits this long for a cold start
                                       # (default: 600 s for vLLM, 300 s for llama.cpp)
      node: gpu-a                      # where a request starts it (default: placement picks)
      port: 8000                       # the port such a start uses (default 8000)

`read(p, data, default_name)` records each problem in `p` and carries on, so `hubctl models
validate` lists them all; a problem that makes what follows meaningless stops only the checks
under it. GPU count, tensor parallel size and CPU offload are refused: they are given where
the model is deployed (`hub.models.schema.Deployment`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from typing import Any

from gpufleet.health import show
from hub.configs_fields import METRIC
from hub.convert import NODE_NAME
from hub.models import checks, params
from hub.models.checks import Problems
from hub.models.schema import (
    DRAIN_METRICS,
    ENGINES,
    HEALTH_PATHS,
    GatewayParams,
    GgufSource,
    HfSource,
    LlamaCppParams,
    Model,
    PathSource,
    RegistrySource,
    Source,
    VllmParams,
    as_dict,
)

TOP_KEYS = ("name", "description", "served_model_name", "engine", "source", "vllm", "llama_cpp",
            "vram_gb", "health_path", "drain_metric", "aliases", "gateway")  # fmt: skip
GATEWAY_KEYS = ("idle_ttl", "load_timeout", "node", "port")
SOURCE_KINDS = ("hf", "gguf", "path", "registry")
REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$")
REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,254}$")
GGUF_FILE = re.compile(r"^(?!/)(?!.*(^|/)\.\.(/|$))[^\s]+\.gguf$", re.IGNORECASE)
REGISTRY_FILE = re.compile(r"^(?![/.])(?!.*(^|/)\.\.?(/|$))[^\s]+$")
SERVED = re.compile(r"^\S{1,256}$")
HEALTH = re.compile(r"^/[^\s]{0,255}$")
MAX_VRAM_GB = 10_000
MAX_SECONDS = 7 * 86400.0  # an idle time or a load timeout: at most a week
ELSEWHERE = {key: "is a vLLM parameter: put it under vllm:" for key in params.VLLM_KEYS} | {
    key: "is a llama.cpp parameter: put it under llama_cpp:" for key in params.LLAMA_KEYS[:5]
}


def _hub_ref(p: Problems, where: str, m: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    found = params.section(p, where, m, keys, {})
    assert found is not None
    if "repo" not in found:
        p.add(f"{where}.repo", "is required: add the Hugging Face repository, e.g. Org/Model")
    else:
        found["repo"] = checks.text(p, f"{where}.repo", found["repo"], REPO,
                                    "a Hugging Face repository id such as Org/Model")  # fmt: skip
    if "revision" in found:
        found["revision"] = checks.text(p, f"{where}.revision", found["revision"], REVISION,
                                        "a branch, tag or commit")  # fmt: skip
    return found


def _registry(p: Problems, m: dict[str, Any]) -> RegistrySource | None:
    """`source: {registry: NAME, file: F}`: an entry of the hub's registry."""
    name = checks.label(p, "source.registry", m["registry"], "registry entry's name")
    file = None
    if "file" in m:
        file = checks.text(p, "source.file", m["file"], REGISTRY_FILE,
                           "a relative path of a file of the entry, e.g. model-q4_k_m.gguf",
                           1024)  # fmt: skip
        if file is None:
            return None
    return RegistrySource(name, file) if name else None


def source(p: Problems, value: Any) -> Source | None:
    m = checks.mapping(p, "source", value, "one of hf: {repo}, gguf: {repo, file}, path: /dir, "
                       "registry: NAME")  # fmt: skip
    if m is None:
        return None
    kinds = [key for key in m if key in SOURCE_KINDS]
    allowed = (*SOURCE_KINDS, "file") if "registry" in m else SOURCE_KINDS
    for key in m:
        if key not in allowed:
            hint = (
                "file goes only with registry:"
                if key == "file"
                else "use one of hf, gguf, path, registry"
            )
            p.add(f"source.{key}", f"unknown key{checks.did_you_mean(key, allowed)}; {hint}")
    if len(kinds) != 1:
        got = " and ".join(kinds) if kinds else "none"
        p.add("source", f"must have exactly one of hf, gguf, path, registry, got {got}")
        return None
    if kinds[0] == "registry":
        return _registry(p, m)
    kind, before = kinds[0], len(p)
    if kind == "path":
        path = checks.text(p, "source.path", m["path"], re.compile(r"^/"),
                           "an absolute path on the host, e.g. /models/qwen3-8b", 4096)  # fmt: skip
        return PathSource(path) if path else None
    inner = checks.mapping(p, f"source.{kind}", m[kind], "repo" + (", file" if kind == "gguf"
                           else "") + " and optionally revision")  # fmt: skip
    if inner is None:
        return None
    keys = ("repo", "file", "revision") if kind == "gguf" else ("repo", "revision")
    found = _hub_ref(p, f"source.{kind}", inner, keys)
    if kind == "gguf":
        if "file" not in found:
            p.add("source.gguf.file", "is required: add the .gguf file's path in the repository")
        else:
            found["file"] = checks.text(p, "source.gguf.file", found["file"], GGUF_FILE,
                                        "a relative path ending in .gguf")  # fmt: skip
    if len(p) > before:
        return None
    return GgufSource(**found) if kind == "gguf" else HfSource(**found)


def _engine(p: Problems, m: dict[str, Any], src: Source | None) -> str | None:
    if "engine" in m:
        return checks.choice(p, "engine", m["engine"], ENGINES)
    gguf = isinstance(src, GgufSource) or (isinstance(src, PathSource) and src.is_gguf)
    gguf = gguf or (isinstance(src, RegistrySource) and src.is_gguf)
    return "llama-cpp" if gguf else "vllm"


def _compatible(p: Problems, engine: str, src: Source) -> None:
    if engine == "vllm" and isinstance(src, GgufSource):
        p.add("source.gguf", "vLLM reads a GGUF only from a local file: use source: {path: "
                             "/dir/model.gguf}, or engine: llama-cpp")  # fmt: skip
    if engine == "llama-cpp" and isinstance(src, HfSource):
        p.add("source.hf", "llama.cpp needs a GGUF file: use source: {gguf: {repo, file}} or "
                           "{path: /dir/model.gguf}, or engine: vllm")  # fmt: skip
    if isinstance(src, RegistrySource) and src.file is not None:
        if engine == "vllm":
            p.add("source.file", "vLLM serves the whole entry (a Hugging Face repository): "
                                 "remove file, or use engine: llama-cpp")  # fmt: skip
        elif not src.is_gguf:
            p.add("source.file", f"llama.cpp needs a .gguf file, got {src.file!r}: name the "
                                 "entry's .gguf file")  # fmt: skip
    if engine == "llama-cpp" and isinstance(src, PathSource) and not src.is_gguf:
        p.add("source.path", f"llama.cpp needs a .gguf file, got {src.path!r}: point it at "
                             "the file, or use engine: vllm")  # fmt: skip


def _sections(p: Problems, m: dict[str, Any], engine: str | None
              ) -> tuple[VllmParams | None, LlamaCppParams | None]:  # fmt: skip
    """The engine's section (its defaults when absent); the other engine's is a problem."""
    vllm = llama = None
    for key, name in (("vllm", "vllm"), ("llama_cpp", "llama-cpp")):
        if key in m and engine is not None and engine != name:
            p.add(key, f"is for engine {name}, and this model's engine is {engine}: remove it "
                       f"or set engine: {name}")  # fmt: skip
    if engine == "vllm" or (engine is None and "vllm" in m):
        vllm = params.vllm(p, "vllm", m.get("vllm", {}))
    if engine == "llama-cpp" or (engine is None and "llama_cpp" in m):
        llama = params.llama_cpp(p, "llama_cpp", m.get("llama_cpp", {}))
    return vllm, llama


def _aliases(p: Problems, value: Any, name: str | None) -> tuple[str, ...] | None:
    found = checks.strings(p, "aliases", value, "names")
    if found is None:
        return None
    before = len(p)
    for index, alias in enumerate(found):
        checks.label(p, f"aliases[{index}]", alias, "alias")
        if alias == name or alias in found[:index]:
            p.add(f"aliases[{index}]", f"{alias!r} is listed twice (or is the name): remove it")
    return found if len(p) == before else None


def _drain(p: Problems, m: dict[str, Any], engine: str | None) -> str | None:
    if "drain_metric" not in m:
        return DRAIN_METRICS.get(engine or "vllm")
    value = m["drain_metric"]
    if value is None or value == "none":
        return None
    if engine == "llama-cpp":
        p.add("drain_metric", "llama-cpp-python's server has no /metrics: remove it")
        return None
    if not isinstance(value, str) or not METRIC.match(value):
        p.add("drain_metric", f"must be a Prometheus metric name such as "
                              f"vllm:num_requests_running, or none, got {show(value)}")  # fmt: skip
        return None
    return value


def gateway(p: Problems, value: Any) -> GatewayParams | None:
    """The `gateway:` section: the gateway's idle stop, load wait and scale-from-zero start."""
    m = params.section(p, "gateway", value, GATEWAY_KEYS, {})
    if m is None:
        return None
    before = len(p)
    found: dict[str, Any] = {}
    for key in ("idle_ttl", "load_timeout"):
        if key in m:
            found[key] = checks.number(p, f"gateway.{key}", m[key], 0, MAX_SECONDS,
                                       hint=" (seconds)")  # fmt: skip
    if "node" in m:
        found["node"] = checks.text(p, "gateway.node", m["node"], NODE_NAME,
                                    "a node's name (`hubctl nodes` lists them)")  # fmt: skip
    if "port" in m:
        found["port"] = checks.integer(p, "gateway.port", m["port"], 1, 65535)
    return GatewayParams(**found) if len(p) == before else None


def digest(model: Model) -> str:
    """sha256 of the definition's canonical form: what a running model is compared with. The
    gateway section is left out: it changes how the gateway treats the model, not its server."""
    data = as_dict(model)
    data.pop("gateway", None)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def read(p: Problems, data: Any, default_name: str, file: str = "") -> Model | None:
    """The model, or None with every problem recorded in `p`."""
    if not isinstance(data, dict):
        p.add("", f"must be a model definition (a mapping with name, source and engine), got "
                  f"{show(data)}")  # fmt: skip
        return None
    before = len(p)
    m = params.section(p, "", data, TOP_KEYS, ELSEWHERE)
    assert m is not None
    name = None
    if "name" in m:
        name = checks.label(p, "name", m["name"], "model name")
    elif checks.LABEL.match(default_name):
        name = default_name
    else:
        of_file = f"; the file name {default_name!r} is not one" if default_name else ""
        p.add("name", f"is required: add name: (a DNS label such as qwen3-8b){of_file}")
    if "source" not in m:
        p.add("source", "is required: add source: {hf: {repo: Org/Model}}, {gguf: {repo, file}} "
                        "or {path: /dir}")  # fmt: skip
    src = source(p, m["source"]) if "source" in m else None
    engine = _engine(p, m, src)
    if engine is not None and src is not None:
        _compatible(p, engine, src)
    vllm, llama = _sections(p, m, engine)
    served = name
    if "served_model_name" in m:
        served = checks.text(p, "served_model_name", m["served_model_name"], SERVED,
                             "a name without spaces, at most 256 characters")  # fmt: skip
    cpu = llama is not None and llama.backend == "cpu"
    vram = None
    if "vram_gb" in m:
        vram = checks.number(p, "vram_gb", m["vram_gb"], 0, MAX_VRAM_GB, low_ok=cpu)
    health = HEALTH_PATHS.get(engine or "vllm", "/health")
    if "health_path" in m:
        health = checks.text(p, "health_path", m["health_path"], HEALTH,
                             "a URL path starting with /, e.g. /health") or health  # fmt: skip
    drain = _drain(p, m, engine)
    aliases = _aliases(p, m["aliases"], name) if "aliases" in m else ()
    description = ""
    if "description" in m:
        description = checks.text(p, "description", m["description"], None, "a one-line "
                                  "summary", checks.MAX_TEXT) or ""  # fmt: skip
    routed = gateway(p, m["gateway"]) if "gateway" in m else GatewayParams()
    if len(p) > before or name is None or src is None or engine is None or served is None:
        return None
    assert routed is not None  # its problems were counted
    model = Model(name=name, source=src, engine=engine, served_model_name=served, vllm=vllm,
                  llama_cpp=llama, vram_gb=vram, health_path=health, drain_metric=drain,
                  aliases=aliases or (), description=description, gateway=routed,
                  file=file)  # fmt: skip
    return dataclasses.replace(model, digest=digest(model))
