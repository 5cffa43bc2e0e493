"""The engine sections of a model: `vllm:` and `llama_cpp:`, every problem one line.

Flags the generators write from fields (or from the deployment) may not be repeated in
`extra_args`: a model's parameter lives in one place, and the GPUs it runs on are the
deployment's, not the model's.
"""

from __future__ import annotations

import re
from typing import Any

from gpufleet.process import REFUSED_ENV
from hub.models import checks
from hub.models.checks import Problems
from hub.models.schema import BACKENDS, DTYPES, LlamaCppParams, VllmParams

PARSER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# An OCI image reference: [registry/]repository[:tag][@sha256:digest].
IMAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:-]{0,254}(@sha256:[0-9a-f]{64})?$")
VLLM_KEYS = ("max_model_len", "gpu_memory_utilization", "max_num_seqs", "max_num_batched_tokens",
             "enable_chunked_prefill", "enable_prefix_caching", "enable_auto_tool_choice",
             "tool_call_parser", "reasoning_parser", "dtype", "disable_custom_all_reduce",
             "extra_args", "env", "image")  # fmt: skip
LLAMA_KEYS = ("n_ctx", "n_gpu_layers", "n_batch", "chat_format", "backend", "extra_args", "env")
INFRA_KEYS = ("gpu_count", "gpus", "tensor_parallel_size", "pipeline_parallel_size",
              "data_parallel_size", "cpu_offload_gb")  # fmt: skip
INFRA = (
    "is an infrastructure parameter, not the model's: give it where the model is deployed "
    "(the node and GPUs it runs on), not in the model file"
)
GPU_ENV = ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES",
           "GGML_VK_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES")  # fmt: skip
GPU_ENV_WHY = "chooses GPUs, which is the deployment's part: give the GPUs where it is deployed"
VLLM_FLAGS = {f"--{key.replace('_', '-')}": key for key in VLLM_KEYS[:-3]} | {
    "--no-enable-chunked-prefill": "enable_chunked_prefill",
    "--no-enable-prefix-caching": "enable_prefix_caching",
    "--no-enable-auto-tool-choice": "enable_auto_tool_choice",
    "--no-disable-custom-all-reduce": "disable_custom_all_reduce",
}
VLLM_INFRA_FLAGS = ("--tensor-parallel-size", "-tp", "--pipeline-parallel-size", "-pp",
                    "--data-parallel-size", "-dp", "--cpu-offload-gb")  # fmt: skip
VLLM_OWN_FLAGS = ("--model", "--served-model-name", "--revision", "--host", "--port")
LLAMA_FLAGS = {f"--{key}": key for key in LLAMA_KEYS[:4]}
LLAMA_INFRA_FLAGS = ("--main_gpu", "--tensor_split", "--split_mode")
LLAMA_OWN_FLAGS = ("--model", "--model_alias", "--hf_model_repo_id", "--host", "--port")


def section(p: Problems, where: str, value: Any, allowed: tuple[str, ...],
            elsewhere: dict[str, str]) -> dict[str, Any] | None:  # fmt: skip
    """The known keys of a mapping; unknown ones are problems, with where they belong when
    they belong to another section (`elsewhere`: key -> the hint) or to the deployment."""
    found = checks.mapping(p, where, value, ", ".join(allowed))
    if found is None:
        return None
    for key in found:
        at = f"{where}.{key}" if where else str(key)
        if key in allowed:
            continue
        if key in INFRA_KEYS:
            p.add(at, INFRA)
        elif key in elsewhere:
            p.add(at, elsewhere[key])
        else:
            p.add(at, f"unknown key{checks.did_you_mean(key, allowed)}; allowed: "
                      f"{', '.join(allowed)}")  # fmt: skip
    return {key: item for key, item in found.items() if key in allowed}


def _extra(p: Problems, where: str, value: Any, fields: dict[str, str], infra: tuple[str, ...],
           own: tuple[str, ...], section_name: str) -> tuple[str, ...] | None:  # fmt: skip
    args = checks.strings(p, where, value, "command-line arguments")
    if args is None:
        return None
    before = len(p)
    for index, arg in enumerate(args):
        flag = arg.split("=", 1)[0]
        at = f"{where}[{index}]"
        if flag in fields:
            p.add(at, f"{flag} is the field {section_name}.{fields[flag]}: set that instead")
        elif flag in infra:
            p.add(at, f"{flag} {INFRA}")
        elif flag in own:
            p.add(at, f"{flag} is written by gpufleet from the model and its deployment: remove it")
    return args if len(p) == before else None


def _cross(p: Problems, found: dict[str, Any], shown: dict[str, str], at: dict[str, str]) -> None:
    """The rules vLLM applies across fields (`shown`: each field's name as the operator wrote
    it, for the messages)."""
    if found.get("enable_auto_tool_choice") and "tool_call_parser" not in found:
        parser = shown["tool_call_parser"]
        p.add(at["enable_auto_tool_choice"],
              f"needs {parser} (vLLM refuses --enable-auto-tool-choice without "
              f"--tool-call-parser): add {parser}, e.g. hermes, or remove it")  # fmt: skip
    seqs, batched = found.get("max_num_seqs"), found.get("max_num_batched_tokens")
    if seqs and batched and batched < seqs:
        least = f"must be at least {shown['max_num_seqs']} ({seqs}), got {batched}"
        p.add(at["max_num_batched_tokens"], f"{least}: vLLM refuses less")
    length = found.get("max_model_len")
    if found.get("enable_chunked_prefill") is False and batched and length and batched < length:
        p.add(at["max_num_batched_tokens"],
              f"must be at least {shown['max_model_len']} ({length}) without chunked prefill, "
              f"got {batched}: raise it or enable chunked prefill")  # fmt: skip


def vllm(p: Problems, where: str, value: Any) -> VllmParams | None:
    before = len(p)
    elsewhere = {key: "is a llama.cpp parameter: this model's engine is vllm" for key in LLAMA_KEYS
                 if key not in VLLM_KEYS}  # fmt: skip
    m = section(p, where, value, VLLM_KEYS, elsewhere)
    if m is None:
        return None
    at = {key: f"{where}.{key}" for key in VLLM_KEYS}
    found: dict[str, Any] = {}
    for key in ("max_model_len", "max_num_seqs", "max_num_batched_tokens"):
        if key in m:
            found[key] = checks.integer(p, at[key], m[key], 1)
    if "gpu_memory_utilization" in m:
        hint = " (a fraction: 0.9 is 90%)" if isinstance(m["gpu_memory_utilization"], int) else ""
        found["gpu_memory_utilization"] = checks.number(
            p, at["gpu_memory_utilization"], m["gpu_memory_utilization"], 0, 1, hint=hint
        )
    for key in ("enable_chunked_prefill", "enable_prefix_caching", "enable_auto_tool_choice",
                "disable_custom_all_reduce"):  # fmt: skip
        if key in m:
            found[key] = checks.boolean(p, at[key], m[key])
    for key in ("tool_call_parser", "reasoning_parser"):
        if key in m:
            found[key] = checks.text(p, at[key], m[key], PARSER, "a parser name such as hermes")
    if "dtype" in m:
        found["dtype"] = checks.choice(p, at["dtype"], m["dtype"], DTYPES)
    if "extra_args" in m:
        found["extra_args"] = _extra(p, at["extra_args"], m["extra_args"], VLLM_FLAGS,
                                     VLLM_INFRA_FLAGS, VLLM_OWN_FLAGS, "vllm")  # fmt: skip
    if "env" in m:
        found["env"] = checks.environment(p, at["env"], m["env"], GPU_ENV, GPU_ENV_WHY)
    if "image" in m:
        found["image"] = checks.text(p, at["image"], m["image"], IMAGE,
                                     "an image such as vllm/vllm-openai:v0.10.0")  # fmt: skip
    _cross(p, found, {key: p.rename(path) for key, path in at.items()}, at)
    if len(p) > before:
        return None
    return VllmParams(**{k: v for k, v in found.items() if k not in ("extra_args", "env")},
                      extra_args=found.get("extra_args", ()), env=found.get("env", ()))  # fmt: skip


def llama_cpp(p: Problems, where: str, value: Any) -> LlamaCppParams | None:
    before = len(p)
    elsewhere = {key: "is a vLLM parameter: this model's engine is llama-cpp" for key in VLLM_KEYS
                 if key not in LLAMA_KEYS}  # fmt: skip
    m = section(p, where, value, LLAMA_KEYS, elsewhere)
    if m is None:
        return None
    at = {key: f"{where}.{key}" for key in LLAMA_KEYS}
    found: dict[str, Any] = {}
    if "n_ctx" in m:  # 0: the context length the model was trained with
        found["n_ctx"] = checks.integer(p, at["n_ctx"], m["n_ctx"], 0)
    if "n_gpu_layers" in m:  # -1: every layer
        found["n_gpu_layers"] = checks.integer(p, at["n_gpu_layers"], m["n_gpu_layers"], -1)
    if "n_batch" in m:
        found["n_batch"] = checks.integer(p, at["n_batch"], m["n_batch"], 1)
    if "chat_format" in m:
        found["chat_format"] = checks.text(p, at["chat_format"], m["chat_format"], PARSER,
                                           "a chat format such as chatml")  # fmt: skip
    backend = checks.choice(p, at["backend"], m.get("backend", "cuda"), BACKENDS)
    if "extra_args" in m:
        found["extra_args"] = _extra(p, at["extra_args"], m["extra_args"], LLAMA_FLAGS,
                                     LLAMA_INFRA_FLAGS, LLAMA_OWN_FLAGS, "llama_cpp")  # fmt: skip
    if "env" in m:
        found["env"] = checks.environment(p, at["env"], m["env"], GPU_ENV, GPU_ENV_WHY)
        for key, _ in found["env"] or ():
            if REFUSED_ENV.match(key):  # agents refuse it too: say so when the file is read
                p.add(f"{at['env']}.{key}", "is refused for a llama.cpp server, which runs on "
                      "the host (it could load code from a path): set it in the agent's own "
                      "environment on the hosts that need it")  # fmt: skip
    if backend == "cpu" and found.get("n_gpu_layers") not in (None, 0):
        p.add(at["n_gpu_layers"], "must be 0 or left out with backend cpu: remove it")
    if len(p) > before or backend is None:
        return None
    return LlamaCppParams(**{k: v for k, v in found.items() if k not in ("extra_args", "env")},
                          backend=backend, extra_args=found.get("extra_args", ()),
                          env=found.get("env", ()))  # fmt: skip
