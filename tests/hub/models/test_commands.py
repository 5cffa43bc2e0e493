"""Generated engine command lines, golden per field: vLLM's flags (vllm/engine/arg_utils.py,
vllm/entrypoints/openai/cli_args.py) and llama-cpp-python's server options
(llama_cpp/server/settings.py through llama_cpp/server/cli.py)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from hub.models import llamacpp, vllm
from hub.models.schema import (
    Deployment,
    GgufSource,
    HfSource,
    LlamaCppParams,
    Model,
    PathSource,
    VllmParams,
)

HEAD = ["--model=Org/Model", "--served-model-name=chat"]


def model(**params: Any) -> Model:
    return Model(name="chat", source=HfSource("Org/Model"), engine="vllm",
                 served_model_name="chat", vllm=VllmParams(**params))  # fmt: skip


def llama(source: Any = None, **params: Any) -> Model:
    return Model(name="tiny", source=source or PathSource("/m/tiny.gguf"), engine="llama-cpp",
                 served_model_name="tiny-chat", llama_cpp=LlamaCppParams(**params),
                 health_path="/v1/models")  # fmt: skip


def test_a_model_with_no_parameters_leaves_every_default_to_vllm() -> None:
    assert vllm.args(model()) == HEAD


GOLDEN = [
    ({"max_model_len": 32768}, ["--max-model-len=32768"]),
    ({"gpu_memory_utilization": 0.91}, ["--gpu-memory-utilization=0.91"]),
    ({"max_num_seqs": 16}, ["--max-num-seqs=16"]),
    ({"max_num_batched_tokens": 8192}, ["--max-num-batched-tokens=8192"]),
    ({"enable_chunked_prefill": False}, ["--no-enable-chunked-prefill"]),
    ({"enable_chunked_prefill": True}, []),  # on by default in vLLM
    ({"enable_prefix_caching": False}, ["--no-enable-prefix-caching"]),
    ({"enable_prefix_caching": True}, []),  # on by default in vLLM
    ({"enable_auto_tool_choice": True, "tool_call_parser": "hermes"},
     ["--enable-auto-tool-choice", "--tool-call-parser=hermes"]),
    ({"enable_auto_tool_choice": False}, []),  # off by default
    ({"tool_call_parser": "llama3_json"}, ["--tool-call-parser=llama3_json"]),
    ({"reasoning_parser": "deepseek_r1"}, ["--reasoning-parser=deepseek_r1"]),
    ({"dtype": "bfloat16"}, ["--dtype=bfloat16"]),
    ({"disable_custom_all_reduce": True}, ["--disable-custom-all-reduce"]),
    ({"disable_custom_all_reduce": False}, []),  # off by default
    ({"extra_args": ("--kv-cache-dtype=fp8", "--enforce-eager")},
     ["--kv-cache-dtype=fp8", "--enforce-eager"]),
]  # fmt: skip


@pytest.mark.parametrize(("params", "flags"), GOLDEN, ids=[str(p) for p, _ in GOLDEN])
def test_each_vllm_field_gives_its_exact_flag(params: dict[str, Any], flags: list[str]) -> None:
    assert vllm.args(model(**params)) == HEAD + flags


def test_the_source_revision_and_a_local_copy() -> None:
    pinned = dataclasses.replace(model(), source=HfSource("Org/Model", "v1.2"))
    assert vllm.args(pinned)[:2] == ["--model=Org/Model", "--revision=v1.2"]
    local = dataclasses.replace(model(), source=PathSource("/models/chat"))
    assert vllm.args(local)[0] == "--model=/models/chat"
    copy = Deployment(model_path="/cache/org-model")
    assert vllm.args(pinned, copy)[:2] == ["--model=/cache/org-model", "--served-model-name=chat"]


def test_infrastructure_comes_from_the_deployment_never_the_model() -> None:
    assert vllm.args(model(), Deployment(gpus=(0,))) == HEAD
    two = Deployment(gpus=(2, 3), cpu_offload_gb=8, host="0.0.0.0", port=8000)
    assert vllm.args(model(max_model_len=4096), two) == [
        *HEAD, "--max-model-len=4096", "--tensor-parallel-size=2", "--cpu-offload-gb=8",
        "--host=0.0.0.0", "--port=8000"]  # fmt: skip
    assert vllm.args(model(), Deployment(tensor_parallel_size=4))[-1] == "--tensor-parallel-size=4"


def test_the_whole_command_line_and_environment() -> None:
    chat = dataclasses.replace(model(max_model_len=8192, enable_prefix_caching=False,
                                     env=(("HF_HUB_OFFLINE", "1"),)),
                               served_model_name="Qwen/Qwen3 8B")  # fmt: skip
    assert vllm.command_line(chat) == (
        "vllm serve --model=Org/Model '--served-model-name=Qwen/Qwen3 8B' --max-model-len=8192 "
        "--no-enable-prefix-caching"
    )
    assert vllm.env(chat) == {"HF_HUB_OFFLINE": "1"}
    with pytest.raises(ValueError, match="runs on llama-cpp, not vLLM"):
        vllm.args(llama())


def test_llama_cpp_server_command() -> None:
    assert llamacpp.args(llama()) == [
        "python", "-m", "llama_cpp.server", "--model=/m/tiny.gguf", "--model_alias=tiny-chat",
        "--n_gpu_layers=-1", "--interrupt_requests=false"]  # fmt: skip
    full = llama(n_ctx=4096, n_gpu_layers=20, n_batch=256, chat_format="chatml",
                 extra_args=("--flash_attn=true",))  # fmt: skip
    at = Deployment(gpus=(1, 2), host="127.0.0.1", port=8011, python="/envs/cuda/bin/python")
    assert llamacpp.args(full, at) == [
        "/envs/cuda/bin/python", "-m", "llama_cpp.server", "--model=/m/tiny.gguf",
        "--model_alias=tiny-chat", "--host=127.0.0.1", "--port=8011", "--n_gpu_layers=20",
        "--n_ctx=4096", "--n_batch=256", "--chat_format=chatml", "--interrupt_requests=false",
        "--flash_attn=true"]  # fmt: skip
    assert llamacpp.env(full, at) == {"CUDA_VISIBLE_DEVICES": "1,2"}
    assert llamacpp.command_line(full).startswith("python -m llama_cpp.server --model=/m/tiny")


VISIBLE = [("cuda", "CUDA_VISIBLE_DEVICES"), ("rocm", "HIP_VISIBLE_DEVICES"),
           ("vulkan", "GGML_VK_VISIBLE_DEVICES")]  # fmt: skip


@pytest.mark.parametrize(("backend", "variable"), VISIBLE)
def test_llama_cpp_gpus_by_backend(backend: str, variable: str) -> None:
    assert llamacpp.env(llama(backend=backend), Deployment(gpus=(0,))) == {variable: "0"}


def test_llama_cpp_on_the_cpu_and_from_a_repository() -> None:
    cpu = llama(backend="cpu")
    assert llamacpp.args(cpu)[-2:] == ["--n_gpu_layers=0", "--interrupt_requests=false"]
    assert llamacpp.env(cpu, Deployment(gpus=(0,))) == {}
    remote = llama(GgufSource("Qwen/Qwen3-8B-GGUF", "Qwen3-8B-Q4_K_M.gguf"))
    assert llamacpp.args(remote)[3:5] == ["--model=Qwen3-8B-Q4_K_M.gguf",
                                          "--hf_model_repo_id=Qwen/Qwen3-8B-GGUF"]  # fmt: skip
    pinned = llama(GgufSource("Qwen/Qwen3-8B-GGUF", "Qwen3-8B-Q4_K_M.gguf", "abc123"))
    with pytest.raises(ValueError, match="cannot fetch revision 'abc123' itself"):
        llamacpp.args(pinned)
    local = Deployment(model_path="/cache/q.gguf")
    assert llamacpp.args(pinned, local)[3] == "--model=/cache/q.gguf"
