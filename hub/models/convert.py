"""The Models service's protobuf: the one place `hub.models` values become messages."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from gpufleet.v1 import models_pb2
from hub.models.catalog import Checked, Detail, Entry
from hub.models.schema import DEFAULT_N_CTX, Model, RegistrySource
from hub.registry.caches import CachedView

if TYPE_CHECKING:
    from hub.models.backend import Decision


def max_context(model: Model) -> int | None:
    """Tokens the server takes; None: the model's own (trained) length."""
    if model.vllm is not None:
        return model.vllm.max_model_len
    if model.llama_cpp is not None:
        n_ctx = model.llama_cpp.n_ctx
        return DEFAULT_N_CTX if n_ctx is None else (n_ctx or None)  # 0: the trained length
    return None


def cached_on(holders: Sequence[tuple[str, CachedView]], revision: str | None,
              connected: Callable[[str], bool]) -> list[str]:  # fmt: skip
    """Where a registry entry is cached: "gpu-a" where a switch starts at once from it, else
    with why not: "gpu-b (partial)", "(fetching)", "(unverified)", "(old revision)", "(down)"."""
    found = []
    for node, view in holders:
        notes = [view.state] if view.state != "complete" else []
        if view.state == "complete" and not view.verified:
            notes.append("unverified")
        if revision is not None and view.revision != revision:
            notes.append("old revision")
        if not connected(node):
            notes.append("down")
        found.append(f"{node} ({', '.join(notes)})" if notes else node)
    return found


def registry_entry(model: Model) -> str:
    """The registry entry the model is served from ("" for another source)."""
    return model.source.name if isinstance(model.source, RegistrySource) else ""


def info(entry: Entry, running_on: list[str] | None = None,
         cached: list[str] | None = None) -> models_pb2.ModelInfo:  # fmt: skip
    model = entry.model
    message = models_pb2.ModelInfo(
        name=model.name, aliases=list(model.aliases), engine=model.engine,
        source=model.source.describe(), served_model_name=model.served_model_name,
        vram=models_pb2.VramEstimate(basis=entry.estimate.basis),
        description=model.description, digest=model.digest, file=model.file,
        running_on=running_on or [], environment=entry.environment,
        backend_switched=entry.switched, cached_on=cached or [],
    )  # fmt: skip
    if entry.gpus_needed is not None:
        message.gpus_needed = entry.gpus_needed
    context = max_context(model)
    if context is not None:
        message.max_context = context
    if entry.estimate.vram_gb is not None:
        message.vram.gb = entry.estimate.vram_gb
    return message


def listing(
    entries: list[Entry], errors: list[str], running_on: dict[str, list[str]] | None = None,
    cached: dict[str, list[str]] | None = None,
) -> models_pb2.ListModelsResponse:  # fmt: skip
    """The listing; `running_on`: model name -> where it runs ("gpu-a (GPU 0)"); `cached`:
    registry entry -> where it is cached (`cached_on`)."""
    where, held = running_on or {}, cached or {}
    return models_pb2.ListModelsResponse(
        models=[info(e, where.get(e.model.name), held.get(registry_entry(e.model)))
                for e in entries], errors=errors,
    )  # fmt: skip


def detail(found: Detail, cached: list[str] | None = None) -> models_pb2.GetModelResponse:
    return models_pb2.GetModelResponse(
        model=info(found.entry, cached=cached), yaml=found.yaml, deployment=found.deployment,
        command=found.command, argv=list(found.argv), env=dict(found.env),
        command_error=found.command_error,
    )  # fmt: skip


def validation(problems: list[str], models: list[Checked]) -> models_pb2.ValidateModelResponse:
    return models_pb2.ValidateModelResponse(
        valid=not problems,
        problems=problems,
        models=[
            models_pb2.ValidatedModel(model=info(c.entry), yaml=c.yaml,
                                      vllm_model_yaml=c.vllm_model_yaml,
                                      vllm_model_error=c.vllm_model_error)
            for c in models
        ],
    )  # fmt: skip


def backend_switched(decision: Decision, operation_id: str) -> models_pb2.SwitchBackendResponse:
    return models_pb2.SwitchBackendResponse(
        instant_switch=decision.instant, environment=decision.environment,
        operation_id=operation_id, nodes=list(decision.nodes), builds=decision.build_lines(),
    )  # fmt: skip
