"""What the Models service answers, computed where the hub runs CPU work (`hub.work`).

Each function here reads hostile input (model files, GGUF headers) and runs in a worker of the
hub's models lane, never on its event loop; what it returns is plain picklable values, turned
into protobuf by `hub.models.convert`. `listing` is every model of the directory with its VRAM
estimate, `detail` one model with the engine command a default deployment (one GPU, port 8000)
gets, `validation` a file's every problem, or its models in both YAML forms. A llama.cpp model
`switch-backend` associated with another environment (`environments`: model -> environment) is
estimated and commanded as it runs from there, and says so (`Entry.environment`, `switched`). A
model from the registry is estimated and commanded from its entry (`entries`: what the hub's
database holds, plain data).
"""

from __future__ import annotations

import functools
import os
import shlex
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from hub.models import cached, chill, deploy, estimate, gguf, llamacpp, load, vllm
from hub.models.load import ModelError
from hub.models.schema import (
    Deployment,
    Model,
    PathSource,
    RegistryCopy,
    RegistrySource,
    Source,
    as_dict,
)

DEFAULT_DEPLOYMENT = Deployment(gpus=(0,), port=8000)


class NotFound(ModelError):
    """No model has that name or alias (the line lists close names)."""


class SafeSizes(estimate.DiskSizes):
    """The hub's own disk: a GGUF header only from a regular file (a FIFO or a device named
    by a model would block the read or never end), cached by the file's identity."""

    def gguf_header(self, source: Source) -> gguf.Header | None:
        if not isinstance(source, PathSource) or not source.is_gguf:
            return None
        try:
            info = os.stat(source.path)
        except OSError:
            return None
        if not stat.S_ISREG(info.st_mode):
            return None
        return _header(source.path, info.st_ino, info.st_size, info.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _header(path: str, inode: int, size: int, mtime_ns: int) -> gguf.Header | None:
    """A file's header, read once per version of the file (workers live as long as the hub)."""
    del inode, size, mtime_ns  # the cache key: a changed file is read again
    try:
        with Path(path).open("rb") as file:
            return gguf.read_header(file)
    except OSError:
        return None


SIZES = SafeSizes()


@dataclass(frozen=True)
class Entry:
    model: Model
    estimate: estimate.Estimate  # per GPU, for one GPU
    # The fewest GPUs (1, 2, 4 or 8) of the cluster's largest that hold it; 0: it needs none
    # (llama.cpp on cpu); None: unknown (no estimate, no GPU known, or more than 8).
    gpus_needed: int | None = None
    # llama.cpp: the environment it runs from (its backend, or what switch-backend associated,
    # then `switched`); "" for vLLM.
    environment: str = ""
    switched: bool = False


@dataclass(frozen=True)
class Detail:
    entry: Entry
    yaml: str  # the definition in our YAML form
    deployment: str  # what the command is generated for, in words
    argv: tuple[str, ...]  # empty when `command_error` says why there is none
    env: tuple[tuple[str, str], ...]
    command_error: str = ""

    @property
    def command(self) -> str:
        return shlex.join(self.argv) if self.argv else ""


@dataclass(frozen=True)
class Checked:
    entry: Entry
    yaml: str
    vllm_model_yaml: str  # "" when the model cannot be a VLLMModel
    vllm_model_error: str  # why not, one line


def dump(data: object) -> str:
    """YAML as people write it: keys in the definition's order, block style."""
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False,
                          width=100)  # fmt: skip


GPU_COUNTS = (1, 2, 4, 8)
MIB = 1024


def gpus_needed(model: Model, largest_mb: int | None,
                sizes: estimate.Sizes = SIZES) -> int | None:  # fmt: skip
    """The fewest of GPU_COUNTS GPUs of `largest_mb` MiB each whose share of the model's
    estimate fits (0: the model runs on no GPU; None: unknown)."""
    if model.llama_cpp is not None and model.llama_cpp.backend == "cpu":
        return 0
    if not largest_mb:
        return None
    for count in GPU_COUNTS:
        need = estimate.estimate(model, sizes, count).vram_gb
        if need is None:
            return None
        if need * MIB <= largest_mb:
            return count
    return None


def entry(model: Model, largest_mb: int | None = None, environment: str = "",
          registry: Sequence[RegistryCopy] = ()) -> Entry:  # fmt: skip
    """The model's listing entry; estimated as it runs from `environment` ("": its own), a
    registry source from its entry among `registry`."""
    sizes = estimate.EntrySizes(SIZES, cached.entry_for(model, registry))
    if model.llama_cpp is None:
        return Entry(model, estimate.estimate(model, sizes, 1),
                     gpus_needed(model, largest_mb, sizes))  # fmt: skip
    runs = deploy.on_environment(model, environment)
    return Entry(model, estimate.estimate(runs, sizes, 1), gpus_needed(runs, largest_mb, sizes),
                 environment or model.llama_cpp.backend, bool(environment))  # fmt: skip


def listing(
    directory: Path, largest_mb: int | None = None, environments: Mapping[str, str] | None = None,
    registry: Sequence[RegistryCopy] = (),
) -> tuple[list[Entry], list[str]]:  # fmt: skip
    """Every model of the directory by name, and one line per file that did not load;
    `largest_mb`: the cluster's largest GPU, for how many GPUs each model needs;
    `environments`: the associations of switch-backend; `registry`: the registry's entries."""
    models, errors = load.load_directory(directory)
    found = environments or {}
    entries = [entry(models[name], largest_mb, found.get(name, ""), registry)
               for name in sorted(models)]  # fmt: skip
    return entries, [str(e) for e in errors]


def describe(deployment: Deployment) -> str:
    """'GPU 0, port 8000', 'GPUs 0,1, port 8000', or 'default GPUs' when none are named."""
    gpus = ",".join(str(gpu) for gpu in deployment.gpus)
    where = f"GPU{'s' if len(deployment.gpus) > 1 else ''} {gpus}" if gpus else "default GPUs"
    return where + (f", port {deployment.port}" if deployment.port is not None else "")


def command(model: Model, deployment: Deployment) -> tuple[list[str], dict[str, str]]:
    """The engine's whole argv and its environment additions (ValueError when there is none;
    a registry source whose entry is not usable: the line says how to fill it)."""
    if model.engine == "vllm":
        return [*vllm.ENTRYPOINT, *vllm.args(model, deployment)], vllm.env(model)
    return llamacpp.args(model, deployment), llamacpp.env(model, deployment)


def detail(directory: Path, name: str, deployment: Deployment = DEFAULT_DEPLOYMENT,
           environments: Mapping[str, str] | None = None,
           registry: Sequence[RegistryCopy] = ()) -> Detail:  # fmt: skip
    """One model by name or alias (NotFound naming close ones), with its engine command (as it
    runs from the environment switch-backend associated, when it has one; from the node's
    model cache for a registry source, whose entry is among `registry`)."""
    models, _ = load.load_directory(directory)
    try:
        model = load.find(models, name)
    except ModelError as exc:
        raise NotFound(str(exc)) from None
    environment = (environments or {}).get(model.name, "")
    found = entry(model, environment=environment, registry=registry)
    runs = deploy.on_environment(model, environment)
    if runs is not model and not deploy.needs_gpu(runs):
        deployment = Deployment(port=deployment.port)  # on the cpu: no GPU
    deployment = replace(deployment, entry=cached.entry_for(model, registry))
    try:
        argv, env = command(runs, deployment)
    except ValueError as exc:
        return Detail(found, dump(as_dict(model)), describe(deployment), (), (), str(exc))
    return Detail(found, dump(as_dict(model)), describe(deployment), tuple(argv),
                  tuple(sorted(env.items())))  # fmt: skip


def checked(model: Model) -> Checked:
    try:
        exported, error = dump(chill.export(model)), ""
    except ValueError as exc:
        exported, error = "", str(exc)
    return Checked(entry(model), dump(as_dict(model)), exported, error)


def validation(filename: str, content: str) -> tuple[list[str], list[Checked]]:
    """A file's every problem (one line each), or its models in both YAML forms."""
    try:
        models = load.parse_models(content, Path(filename))
    except ModelError as exc:
        return list(exc.problems), []
    return [], [checked(model) for model in models]


def registry_users(directory: Path, entry: str) -> list[str]:
    """The names of the models whose source is the registry entry `entry`, sorted."""
    models, _ = load.load_directory(directory)
    return sorted(
        name
        for name, model in models.items()
        if isinstance(model.source, RegistrySource) and model.source.name == entry
    )
