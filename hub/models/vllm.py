"""The vLLM server's command line, generated from a model and its deployment.

The arguments follow the server's entrypoint (`vllm serve` in the vllm/vllm-openai image,
or `python -m vllm.entrypoints.openai.api_server`), one `--flag=value` token per field so a
value can never be read as a flag. Spellings are vLLM's own (vllm/engine/arg_utils.py and
vllm/entrypoints/openai/cli_args.py): every boolean field is an argparse
BooleanOptionalAction, so `--no-<flag>` exists for each. Booleans vLLM turns on by default
(chunked prefill, prefix caching) are written only when false, as `--no-...`; booleans off by
default only when true; every other field only when set, so vLLM's defaults stay vLLM's. The
deployment, not the model, gives tensor parallelism, CPU offload, host and port. A registry
source is read offline from the node's model cache (`hub.models.cached`): `--model=ORG/NAME
--revision=COMMIT` with HF_HUB_CACHE and HF_HUB_OFFLINE set (`env`); an imported entry's
revision is no Hub commit, so its snapshot is found through refs/main.
"""

from __future__ import annotations

import shlex

from hub.models import cached
from hub.models.schema import Deployment, HfSource, Model, PathSource, RegistrySource

# (field, flag, kind): "value" writes --flag=value when set; "on" is on by default in vLLM
# (--no-flag when false); "off" is off by default (--flag when true).
FLAGS: tuple[tuple[str, str, str], ...] = (
    ("max_model_len", "--max-model-len", "value"),
    ("gpu_memory_utilization", "--gpu-memory-utilization", "value"),
    ("max_num_seqs", "--max-num-seqs", "value"),
    ("max_num_batched_tokens", "--max-num-batched-tokens", "value"),
    ("enable_chunked_prefill", "--enable-chunked-prefill", "on"),
    ("enable_prefix_caching", "--enable-prefix-caching", "on"),
    ("enable_auto_tool_choice", "--enable-auto-tool-choice", "off"),
    ("tool_call_parser", "--tool-call-parser", "value"),
    ("reasoning_parser", "--reasoning-parser", "value"),
    ("dtype", "--dtype", "value"),
    ("disable_custom_all_reduce", "--disable-custom-all-reduce", "off"),
)
ENTRYPOINT = ("vllm", "serve")  # the vllm/vllm-openai image's entrypoint


def model_argument(model: Model, deployment: Deployment) -> list[str]:
    """--model (and --revision): the local copy the deployment names, else the source."""
    if deployment.model_path:
        return [f"--model={deployment.model_path}"]
    source = model.source
    if isinstance(source, PathSource):
        return [f"--model={source.path}"]
    if isinstance(source, RegistrySource):
        entry = cached.hf_repo(model, deployment.entry)
        revision = [f"--revision={entry.revision}"] if cached.is_commit(entry.revision) else []
        return [f"--model={entry.repo}", *revision]
    if not isinstance(source, HfSource):  # refused when the model was read
        raise ValueError(f"model {model.name!r}: vLLM reads a GGUF only from a local file")
    revision = [f"--revision={source.revision}"] if source.revision else []
    return [f"--model={source.repo}", *revision]


def args(model: Model, deployment: Deployment | None = None) -> list[str]:
    """The server's arguments, after its entrypoint."""
    if model.engine != "vllm" or model.vllm is None:
        raise ValueError(f"model {model.name!r} runs on {model.engine}, not vLLM")
    deployment = deployment or Deployment()
    found = [*model_argument(model, deployment), f"--served-model-name={model.served_model_name}"]
    for field, flag, kind in FLAGS:
        value = getattr(model.vllm, field)
        if kind == "value" and value is not None:
            found.append(f"{flag}={value}")
        elif kind == "on" and value is False:
            found.append(f"--no-{flag[2:]}")
        elif kind == "off" and value is True:
            found.append(flag)
    if deployment.parallel > 1:
        found.append(f"--tensor-parallel-size={deployment.parallel}")
    if deployment.cpu_offload_gb > 0:
        found.append(f"--cpu-offload-gb={deployment.cpu_offload_gb:g}")
    if deployment.host is not None:
        found.append(f"--host={deployment.host}")
    if deployment.port is not None:
        found.append(f"--port={deployment.port}")
    return [*found, *model.vllm.extra_args]


def env(model: Model) -> dict[str, str]:
    """The server's extra environment: the model's env:, and for a registry source the
    offline Hugging Face cache it reads (which the model's env: cannot override)."""
    found = dict(model.vllm.env) if model.vllm is not None else {}
    if isinstance(model.source, RegistrySource):
        found.update(cached.OFFLINE_ENV)
    return found


def command_line(model: Model, deployment: Deployment | None = None) -> str:
    """What `hubctl models show` prints: the whole command, quoted for a shell."""
    return shlex.join([*ENTRYPOINT, *args(model, deployment)])
