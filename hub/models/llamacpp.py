"""The llama-cpp-python server's command line, generated from a model and its deployment.

    python -m llama_cpp.server --model=/models/qwen3-8b-q4_k_m.gguf --model_alias=qwen3-8b ...

Option names are llama-cpp-python's own: llama_cpp/server/cli.py adds `--<field>` for every
field of llama_cpp/server/settings.py (ModelSettings, ServerSettings), underscores kept. With
a GGUF source and no local copy, `--hf_model_repo_id` makes the server fetch the file itself
(Llama.from_pretrained, llama_cpp/server/model.py); it cannot pin a revision, so a model with
a revision needs the deployment's `model_path`. A registry source reads the node's model
cache (`hub.models.cached`: `--model=${GPUFLEET_MODEL_CACHE}/...`). `--model_alias` is the
served model name (what /v1/models lists). GPUs are chosen with the backend's visibility variable.
"""

from __future__ import annotations

import shlex

from hub.models import cached
from hub.models.schema import Deployment, GgufSource, Model, PathSource, RegistrySource

FLAGS = (("n_ctx", "--n_ctx"), ("n_batch", "--n_batch"), ("chat_format", "--chat_format"))
VISIBLE = {  # backend -> the variable that limits the GPUs it sees
    "cuda": "CUDA_VISIBLE_DEVICES",
    "rocm": "HIP_VISIBLE_DEVICES",
    "vulkan": "GGML_VK_VISIBLE_DEVICES",
}
MODULE = ("-m", "llama_cpp.server")


def model_arguments(model: Model, deployment: Deployment) -> list[str]:
    if deployment.model_path:
        return [f"--model={deployment.model_path}"]
    source = model.source
    if isinstance(source, PathSource):
        return [f"--model={source.path}"]
    if isinstance(source, RegistrySource):
        return [f"--model={cached.gguf_path(model, deployment.entry)}"]
    if not isinstance(source, GgufSource):  # refused when the model was read
        raise ValueError(f"model {model.name!r}: llama.cpp needs a GGUF file")
    if source.revision:
        raise ValueError(
            f"model {model.name!r}: llama-cpp-python cannot fetch revision {source.revision!r} "
            "itself: download the file and give its path as the deployment's model_path"
        )
    return [f"--model={source.file}", f"--hf_model_repo_id={source.repo}"]


def args(model: Model, deployment: Deployment | None = None) -> list[str]:
    """The whole command: the environment's interpreter, the server module, its options."""
    if model.engine != "llama-cpp" or model.llama_cpp is None:
        raise ValueError(f"model {model.name!r} runs on {model.engine}, not llama.cpp")
    deployment = deployment or Deployment()
    params = model.llama_cpp
    found = [deployment.python, *MODULE, *model_arguments(model, deployment)]
    found.append(f"--model_alias={model.served_model_name}")
    if deployment.host is not None:
        found.append(f"--host={deployment.host}")
    if deployment.port is not None:
        found.append(f"--port={deployment.port}")
    layers = params.n_gpu_layers
    if layers is None:
        layers = 0 if params.backend == "cpu" else -1  # the server's default is 0: CPU only
    found.append(f"--n_gpu_layers={layers}")
    for field, flag in FLAGS:
        value = getattr(params, field)
        if value is not None:
            found.append(f"{flag}={value}")
    # Off: with it on, the server ends a stream early (a clean [DONE], no finish_reason)
    # whenever another request arrives meanwhile, such as the agent's health check of
    # /v1/models every second; queued, the stream runs to its end. A model's extra_args
    # still decide.
    found.append("--interrupt_requests=false")
    return [*found, *params.extra_args]


def env(model: Model, deployment: Deployment | None = None) -> dict[str, str]:
    """The server's environment additions: the model's env:, and the GPUs it may use."""
    if model.llama_cpp is None:
        return {}
    found = dict(model.llama_cpp.env)
    variable = VISIBLE.get(model.llama_cpp.backend)
    if deployment is not None and deployment.gpus and variable:
        found[variable] = ",".join(str(gpu) for gpu in deployment.gpus)
    return found


def command_line(model: Model, deployment: Deployment | None = None) -> str:
    return shlex.join(args(model, deployment))
