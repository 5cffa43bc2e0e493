"""vLLM-Chill's VLLMModel documents, read as model definitions unchanged, and written back.

    apiVersion: vllm.sir-alfred.io/v1alpha1
    kind: VLLMModel
    metadata: {name: qwen3-coder-30b-fp8}
    spec:
      modelName: Qwen/Qwen3-Coder-30B-A3B-Instruct-FP8   # a Hugging Face repo, or /a/local/dir
      servedModelName: qwen3-coder-30b-fp8
      toolCallParser: qwen3_coder
      reasoningParser: ""                                # "": none
      maxModelLen: 112640
      gpuMemoryUtilization: 0.91
      ...

The spec's camelCase fields are translated to our YAML form and checked by the same rules
(`hub.models.fields`); problems name the spec's fields (`spec.maxModelLen`). gpuCount and
cpuOffloadGB are vLLM-Chill's deployment-level parameters: refused here too, with where they
belong. Beyond vLLM-Chill's fields a spec may hold ours in camelCase (revision, extraArgs,
env, vramGb, healthPath, drainMetric, aliases, description), so `export` loses nothing.
"""

from __future__ import annotations

from typing import Any

from gpufleet.health import show
from hub.models import checks, fields, params
from hub.models.checks import Problems
from hub.models.schema import HfSource, Model, PathSource, as_dict

API_VERSION = "vllm.sir-alfred.io/v1alpha1"
KIND = "VLLMModel"
VLLM_SPEC = {  # spec key -> our key under vllm:, in vLLM-Chill's order
    "toolCallParser": "tool_call_parser", "reasoningParser": "reasoning_parser",
    "maxModelLen": "max_model_len", "gpuMemoryUtilization": "gpu_memory_utilization",
    "enableChunkedPrefill": "enable_chunked_prefill",
    "maxNumBatchedTokens": "max_num_batched_tokens", "maxNumSeqs": "max_num_seqs",
    "dtype": "dtype", "disableCustomAllReduce": "disable_custom_all_reduce",
    "enablePrefixCaching": "enable_prefix_caching",
    "enableAutoToolChoice": "enable_auto_tool_choice",
    "extraArgs": "extra_args", "env": "env", "image": "image",
}  # fmt: skip
TOP_SPEC = {"servedModelName": "served_model_name", "vramGb": "vram_gb",
            "healthPath": "health_path", "drainMetric": "drain_metric", "aliases": "aliases",
            "description": "description"}  # fmt: skip
SPEC_KEYS = ("modelName", "servedModelName", "revision", *VLLM_SPEC, *list(TOP_SPEC)[1:])
INFRA_SPEC = ("gpuCount", "cpuOffloadGB", "cpuOffloadGb", "tensorParallelSize")
DOCUMENT_KEYS = ("apiVersion", "kind", "metadata", "spec", "status")
RENAME = {"name": "metadata.name", "source": "spec.modelName", "source.hf": "spec.modelName",
          "source.hf.repo": "spec.modelName", "source.hf.revision": "spec.revision",
          "source.path": "spec.modelName", "engine": "spec", "vllm": "spec"}  # fmt: skip
RENAME.update({f"vllm.{ours}": f"spec.{theirs}" for theirs, ours in VLLM_SPEC.items()})
RENAME.update({ours: f"spec.{theirs}" for theirs, ours in TOP_SPEC.items()})


def is_document(data: Any) -> bool:
    """A Kubernetes-style document (apiVersion/kind), not a model in our YAML form."""
    return isinstance(data, dict) and ("apiVersion" in data or "kind" in data)


def rename(where: str) -> str:
    """Our field path -> the VLLMModel path the operator wrote."""
    for prefix in sorted(RENAME, key=len, reverse=True):
        if where == prefix or where.startswith((f"{prefix}.", f"{prefix}[")):
            return RENAME[prefix] + where[len(prefix) :]
    return where


def translate(p: Problems, data: dict[str, Any]) -> dict[str, Any] | None:
    """The document in our YAML form; None when it is not a VLLMModel (recorded)."""
    for key in data:
        if key not in DOCUMENT_KEYS:
            p.add(str(key), f"unknown key{checks.did_you_mean(key, DOCUMENT_KEYS)}; a VLLMModel "
                            f"has {', '.join(DOCUMENT_KEYS[:4])}")  # fmt: skip
    if data.get("kind") != KIND:
        p.add("kind", f"must be {KIND}, got {show(data.get('kind'))}: only VLLMModel documents "
                      "(or our model files, without apiVersion and kind) are models")  # fmt: skip
    if data.get("apiVersion") != API_VERSION:
        p.add("apiVersion", f"must be {API_VERSION}, got {show(data.get('apiVersion'))}")
    metadata = checks.mapping(p, "metadata", data.get("metadata"), "name")
    spec = checks.mapping(p, "spec", data.get("spec"), "modelName and vLLM's parameters")
    if metadata is None or spec is None:
        return None
    if "name" not in metadata:
        p.add("metadata.name", "is required: add the model's name, a DNS label")
    native: dict[str, Any] = {"engine": "vllm", "vllm": {}}
    if "name" in metadata:
        native["name"] = metadata["name"]
    for key, value in spec.items():
        if key in INFRA_SPEC:
            p.add(f"spec.{key}", params.INFRA)
        elif key in ("toolCallParser", "reasoningParser") and value == "":
            continue  # vLLM-Chill's way of saying "none"
        elif key in VLLM_SPEC:
            native["vllm"][VLLM_SPEC[key]] = value
        elif key in TOP_SPEC:
            native[TOP_SPEC[key]] = value
        elif key not in ("modelName", "revision"):
            p.add(f"spec.{key}", f"unknown key{checks.did_you_mean(key, SPEC_KEYS)}; allowed: "
                                 f"{', '.join(SPEC_KEYS)}")  # fmt: skip
    model_name = spec.get("modelName")
    if model_name is None:
        p.add("spec.modelName", "is required: add the Hugging Face repository, e.g. Org/Model")
    elif isinstance(model_name, str) and model_name.startswith("/"):
        native["source"] = {"path": model_name}
        if "revision" in spec:
            p.add("spec.revision", "applies to a Hugging Face repository, not a local path")
    else:
        hf = {"repo": model_name} | ({"revision": spec["revision"]} if "revision" in spec else {})
        native["source"] = {"hf": hf}
    return native


def read(p: Problems, data: dict[str, Any], file: str = "") -> Model | None:
    """A VLLMModel document as a model; None with its problems recorded (spec's names)."""
    before = len(p)
    native = translate(p, data)
    if native is None:
        return None
    named = Problems(rename)
    model = fields.read(named, native, "unnamed", file)  # a missing name is recorded above
    p.lines.extend(named.lines)
    return model if len(p) == before else None


def export(model: Model) -> dict[str, Any]:
    """The model as a VLLMModel document (a vLLM model from a repository or a local path)."""
    if model.engine != "vllm" or model.vllm is None:
        raise ValueError(f"model {model.name!r} runs on {model.engine}: a VLLMModel describes "
                         "vLLM models only")  # fmt: skip
    if not isinstance(model.source, HfSource | PathSource):
        raise ValueError(f"model {model.name!r}: a VLLMModel's modelName is a repository or a "
                         f"path, and its source is {model.source.describe()}")  # fmt: skip
    ours = as_dict(model)
    spec: dict[str, Any] = {}
    if isinstance(model.source, HfSource):
        spec["modelName"] = model.source.repo
        if model.source.revision:
            spec["revision"] = model.source.revision
    else:
        spec["modelName"] = model.source.path
    spec["servedModelName"] = model.served_model_name
    vllm = ours.get("vllm", {})
    spec.update({theirs: vllm[key] for theirs, key in VLLM_SPEC.items() if key in vllm})
    spec.update({theirs: ours[key] for theirs, key in list(TOP_SPEC.items())[1:] if key in ours})
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": model.name},
            "spec": spec}  # fmt: skip
